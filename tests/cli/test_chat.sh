#!/usr/bin/env bash
# Chat templates from the command line (docs/CHAT.md):
#   - the template travels: a SentencePiece tokenizer.model with a tokenizer_config.json carrying TinyLlama's
#     chat_template, given to `import --tokenizer`, is in the checkpoint and in its .trin export (`tokenize
#     --tokenizer MODEL --info` reads both, same fingerprint and ids as the tokenizer.model alone);
#   - `run --chat`: the model's template, or a forced one; -i goes on in the KV cache, feeding only the new
#     turn (the prompt-token count is the first turn's plus exactly the continuation's);
#   - `prepare chat`: SFT shards whose masked tokens are the assistant turns;
#   - bad input (exit 1, one error line, no output file) and usage errors (exit 2);
#   - SmolLM2-135M-Instruct (GGUF with its own ChatML template), when ../shared/data has it: answers.
set -u
TRINITY=${TN_TRINITY:?TN_TRINITY not set}
PY=${TN_PYTHON:-/usr/bin/python3}
SHARED=${TN_SHARED_DATA:-/nonexistent}
GGUF=$SHARED/tiny-random-llama-gguf/llama-2-tiny-random.gguf
SPM=$SHARED/llama-tokenizer/tokenizer.model
SMOL=$SHARED/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
if [ ! -r "$GGUF" ] || [ ! -r "$SPM" ]; then
    echo "SKIPPED: $GGUF or $SPM not found"
    exit 77
fi
W=$(mktemp -d /tmp/tn_cli_chat.XXXXXX)
trap 'rm -rf "$W"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
expect() {
    local want=$1
    shift
    "$@" >"$W/out" 2>"$W/err" </dev/null
    local got=$?
    [ "$got" = "$want" ] || { fail "exit $got (want $want): $*"; sed 's/^/    /' "$W/err" | head -5; }
}
one_error() {
    [ "$(wc -l <"$W/err")" = 1 ] && grep -q '^trinity: error: ' "$W/err" || { fail "not one error line: $*"; head -5 "$W/err"; }
}
ntok() { "$TRINITY" tokenize --tokenizer "$W/base.h5" --text "$1" | wc -w; }
prompt_tokens() { sed -n 's/^prompt: \([0-9]*\) tokens.*/\1/p' "$W/err"; }

# TinyLlama-1.1B-Chat's template beside the Llama-2 tokenizer.model
mkdir "$W/tok"
cp "$SPM" "$W/tok/tokenizer.model"
cat >"$W/tok/tokenizer_config.json" <<'J'
{"bos_token": "<s>", "eos_token": "</s>", "chat_template": "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}"}
J
"$TRINITY" import "$GGUF" --tokenizer "$W/tok/tokenizer.model" -o "$W/base.h5" >/dev/null 2>&1 || { echo "FAIL: import"; exit 1; }
"$TRINITY" import "$GGUF" -o "$W/plain.h5" >/dev/null 2>&1 || { echo "FAIL: import plain"; exit 1; }
"$TRINITY" export "$W/base.h5" -o "$W/dense.trin" >/dev/null || { echo "FAIL: export"; exit 1; }

# the template is in the checkpoint and in the .trin; the vocabulary is the tokenizer.model's
expect 0 "$TRINITY" tokenize --tokenizer "$SPM" --info
sha=$(sed -n 's/^sha256 //p' "$W/out")
grep -q '^chat_template none' "$W/out" || fail "tokenizer.model alone: $(cat "$W/out")"
for m in base.h5 dense.trin; do
    expect 0 "$TRINITY" tokenize --tokenizer "$W/$m" --info
    grep -q '^chat_template zephyr$' "$W/out" || fail "$m: chat template not kept: $(cat "$W/out")"
    [ "$(sed -n 's/^sha256 //p' "$W/out")" = "$sha" ] || fail "$m: fingerprint differs from the tokenizer.model's"
    expect 0 "$TRINITY" tokenize --tokenizer "$W/$m" --text "Hello world, 123"
    [ "$(cat "$W/out")" = "$("$TRINITY" tokenize --tokenizer "$SPM" --text "Hello world, 123")" ] || fail "$m: ids differ"
done
expect 0 "$TRINITY" info "$W/dense.trin"
grep -q '^tokenizer trinity-tokenizer, .*, spm, chat template zephyr$' "$W/out" || fail "info: $(grep tokenizer "$W/out")"
expect 0 "$TRINITY" tokenize --tokenizer "$W/plain.h5" --info
grep -q '^chat_template none' "$W/out" || fail "plain import: $(cat "$W/out")"
expect 1 "$TRINITY" tokenize --tokenizer "$W/missing.trin" --info
one_error "tokenize, missing model"

# run --chat with the model's template: the first turn is the whole rendering
# <|user|>\nhi</s>\n<|assistant|>\n  (no BOS: the template writes none)
expect 0 "$TRINITY" run "$W/dense.trin" --chat -p "hi" -n 4 --temp 0 --no-stop
grep -q '^chat template: zephyr' "$W/err" || fail "chat template line: $(cat "$W/err")"
n1=$(prompt_tokens)
want1=$(($(ntok $'<|user|>\nhi') + 1 + $(ntok $'\n<|assistant|>\n')))
[ "$n1" = "$want1" ] || fail "first turn: $n1 prompt tokens, want $want1"
# -i: the second turn feeds only </s>\n<|user|>\nagain</s>\n<|assistant|>\n
printf 'hi\nagain\n' | "$TRINITY" run "$W/dense.trin" --chat -i -n 4 --temp 0 --no-stop >"$W/out" 2>"$W/err"
[ $? = 0 ] || fail "interactive chat exit: $(cat "$W/err")"
[ "$(wc -l <"$W/out")" = 2 ] || fail "interactive chat: want two replies, got: $(cat "$W/out")"
n2=$(prompt_tokens)
want2=$((want1 + 1 + $(ntok $'\n<|user|>\nagain') + 1 + $(ntok $'\n<|assistant|>\n')))
[ "$n2" = "$want2" ] || fail "two turns: $n2 prompt tokens, want $want2 (the first turn's plus the continuation)"
grep -q 'generation: 8 tokens' "$W/err" || fail "interactive chat stats: $(cat "$W/err")"
# the checkpoint gives the same greedy reply as its dense export
expect 0 "$TRINITY" run "$W/dense.trin" --chat -p "hi" -n 6 --temp 0 --no-stop
cp "$W/out" "$W/r1"
expect 0 "$TRINITY" run "$W/base.h5" --chat -p "hi" -n 6 --temp 0 --no-stop
cmp -s "$W/out" "$W/r1" || fail "chat reply of .h5 and .trin differ"
# forced templates, a system message; the end-of-turn token stops generation (not printed)
expect 0 "$TRINITY" run "$W/plain.h5" --chat-template llama2 --system "Be brief." -p "hi" -n 3 --temp 0
grep -q '^chat template: llama2' "$W/err" || fail "forced llama2: $(cat "$W/err")"
expect 0 "$TRINITY" run "$W/plain.h5" --chat --chat-template tinyllama -p "hi" -n 3 --temp 0
expect 0 "$TRINITY" run "$W/dense.trin" --chat --chat-template mistral -p "hi" -n 3 --temp 0

# bad input: exit 1, one error line
expect 1 "$TRINITY" run "$W/plain.h5" --chat -p hi
one_error "no chat template"
grep -q -- '--chat-template' "$W/err" || fail "no-template error does not name --chat-template: $(cat "$W/err")"
expect 1 "$TRINITY" run "$W/dense.trin" --chat-template vicuna -p hi
one_error "unknown chat template"
grep -q 'chatml, llama3, llama2, zephyr, mistral' "$W/err" || fail "unknown template: choices not named"
expect 1 "$TRINITY" run "$W/dense.trin" --chat-template chatml -p hi
one_error "chatml on a vocabulary without <|im_start|>"
expect 1 "$TRINITY" run "$W/dense.trin" --chat-template mistral --system "s" -p hi
one_error "mistral with a system message"
# usage errors: exit 2
expect 2 "$TRINITY" run "$W/dense.trin" --chat --template trinity -p hi
expect 2 "$TRINITY" run "$W/dense.trin" --chat-template zephyr --template alpaca -p hi
expect 2 "$TRINITY" run "$W/dense.trin" --system "s" -p hi
expect 2 "$TRINITY" run "$W/dense.trin" --chat
expect 0 "$TRINITY" run --help
grep -q -- '--chat-template NAME' "$W/out" || fail "run --help lacks --chat-template"

# prepare chat
cat >"$W/conv.jsonl" <<'J'
{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"}]}

{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}, {"role": "user", "content": "and <|user|> 3+3?"}, {"role": "assistant", "content": "6"}]}
J
mkdir "$W/o"
expect 0 "$TRINITY" prepare chat --tokenizer "$W/dense.trin" --in "$W/conv.jsonl" -o "$W/o/chat.h5"
grep -q '2 examples' "$W/out" || fail "prepare chat: $(cat "$W/out")"
if "$PY" -c 'import h5py' 2>/dev/null; then
    masked=$("$PY" - "$W/o/chat.h5" <<'P'
import sys, h5py
f = h5py.File(sys.argv[1], 'r')
assert f.attrs['template'] == 'chat:zephyr' and f.attrs['kind'] == 'sft', dict(f.attrs)
assert list(f['doc_offsets'][:])[0] == 0 and len(f['doc_offsets']) == 3
t, m = f['tokens'][:], f['loss_mask'][:]
assert t[0] != 1  # the template writes no BOS
print(' '.join(str(int(x)) for x, k in zip(t, m) if k))
P
)
    [ $? = 0 ] || fail "prepare chat shard: $masked"
    # the targets: each reply and the </s> after it (which decodes to nothing)
    [ "$(echo "$masked" | tr ' ' '\n' | grep -c '^2$')" = 3 ] || fail "prepare chat: want 3 masked </s>, got: $masked"
    "$TRINITY" tokenize --tokenizer "$W/dense.trin" --decode --text "$masked" >"$W/dec"
    [ "$(cat "$W/dec")" = "Hello! How can I help?46" ] || fail "prepare chat: masked text [$(cat "$W/dec")]"
else
    echo "h5py absent: shard contents not checked"
fi
expect 0 "$TRINITY" prepare chat --tokenizer "$W/plain.h5" --chat-template llama2 --in "$W/conv.jsonl" -o "$W/o/l2.h5" \
    --max-len 20 --val-fraction 0.5 --val-out "$W/o/l2v.h5"
[ -s "$W/o/l2.h5" ] && [ -s "$W/o/l2v.h5" ] || fail "prepare chat with a validation split"
# bad input: exit 1, one error line, no output file
bad_prepare() {
    local name=$1
    shift
    rm -rf "$W/o"; mkdir "$W/o"
    expect 1 "$TRINITY" prepare chat "$@" -o "$W/o/x.h5"
    one_error "prepare chat: $name"
    [ -z "$(ls -A "$W/o")" ] || fail "prepare chat: $name left $(ls "$W/o")"
}
printf '{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}\n{"messages": [{"role": "user" "content": "x"}]}\n' >"$W/bad1.jsonl"
bad_prepare "malformed JSON line" --tokenizer "$W/base.h5" --in "$W/bad1.jsonl"
grep -q 'line 2' "$W/err" || fail "malformed line not located: $(cat "$W/err")"
printf '{"messages": [{"role": "user", "content": "a"}]}\n' >"$W/bad2.jsonl"
bad_prepare "no assistant message" --tokenizer "$W/base.h5" --in "$W/bad2.jsonl"
printf '{"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "b"}]}\n' >"$W/bad3.jsonl"
bad_prepare "content not a string" --tokenizer "$W/base.h5" --in "$W/bad3.jsonl"
printf '{"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}, {"role": "assistant", "content": "c"}]}\n' >"$W/bad4.jsonl"
bad_prepare "roles that do not alternate (llama2)" --tokenizer "$W/plain.h5" --chat-template llama2 --in "$W/bad4.jsonl"
printf '{"messages": [{"role": "tool", "content": "a"}, {"role": "assistant", "content": "b"}]}\n' >"$W/bad5.jsonl"
bad_prepare "unknown role" --tokenizer "$W/base.h5" --in "$W/bad5.jsonl"
bad_prepare "unknown template name" --tokenizer "$W/base.h5" --chat-template vicuna --in "$W/conv.jsonl"
bad_prepare "no chat template" --tokenizer "$W/plain.h5" --in "$W/conv.jsonl"
expect 2 "$TRINITY" prepare chat --tokenizer "$W/base.h5" --template alpaca --in "$W/conv.jsonl" -o "$W/o/x.h5"
expect 2 "$TRINITY" prepare alpaca --tokenizer "$W/base.h5" --chat-template zephyr --in "$W/conv.jsonl" -o "$W/o/x.h5"

# a real instruct model: SmolLM2's GGUF carries its ChatML template into the checkpoint
if [ -r "$SMOL" ]; then
    "$TRINITY" import "$SMOL" -o "$W/smol.h5" >/dev/null 2>&1 || fail "import SmolLM2"
    expect 0 "$TRINITY" tokenize --tokenizer "$W/smol.h5" --info
    grep -q '^chat_template chatml$' "$W/out" || fail "SmolLM2 template: $(cat "$W/out")"
    printf 'What is the capital of France?\nAnd of Germany?\n' |
        "$TRINITY" run "$W/smol.h5" --chat -i -n 24 --temp 0 --threads 2 >"$W/out" 2>"$W/err" || fail "SmolLM2 chat: $(cat "$W/err")"
    grep -q 'default system prompt "You are a helpful AI assistant named SmolLM' "$W/err" || fail "SmolLM2 system prompt: $(cat "$W/err")"
    sed -n 1p "$W/out" | grep -q 'Paris' || fail "SmolLM2 first answer: $(cat "$W/out")"
    sed -n 2p "$W/out" | grep -q 'Berlin' || fail "SmolLM2 second answer: $(cat "$W/out")"
    echo "SmolLM2: $(tr '\n' '|' <"$W/out")"
else
    echo "SmolLM2 GGUF absent: real-model part skipped"
fi

[ "$fails" = 0 ] && echo "test_chat.sh: all passed" || echo "test_chat.sh: $fails failed"
[ "$fails" = 0 ]
