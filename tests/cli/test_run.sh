#!/usr/bin/env bash
# trinity run from the command line, on the shared tiny-random Llama imported and exported: greedy output is
# deterministic and identical between the .h5 checkpoint and its dense .trin export; seeded sampling
# repeats; T2 (int8 kernels) runs; templates, interactive mode (stdin lines, EOF ends), the speed line on
# stderr; bad input exits 1 with one error line, usage errors exit 2.
set -u
TRINITY=${TN_TRINITY:?TN_TRINITY not set}
GGUF=${TN_SHARED_DATA:-/nonexistent}/tiny-random-llama-gguf/llama-2-tiny-random.gguf
if [ ! -r "$GGUF" ]; then
    echo "SKIPPED: $GGUF not found"
    exit 77
fi
W=$(mktemp -d /tmp/tn_cli_run.XXXXXX)
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

"$TRINITY" import "$GGUF" -o "$W/base.h5" >/dev/null 2>&1 || { echo "FAIL: import"; exit 1; }
"$TRINITY" export "$W/base.h5" -o "$W/dense.trin" >/dev/null || { echo "FAIL: export"; exit 1; }
"$TRINITY" export "$W/base.h5" -o "$W/t2.trin" --quantize ternary >/dev/null || { echo "FAIL: export t2"; exit 1; }

# greedy: deterministic, and the same text from the checkpoint and from its dense export
expect 0 "$TRINITY" run "$W/dense.trin" -p "Once upon a time" -n 24 --temp 0 --no-stop
cp "$W/out" "$W/g1"
grep -q 'prompt: [0-9]* tokens, .* tok/s | generation: 24 tokens' "$W/err" || fail "speed line: $(cat "$W/err")"
expect 0 "$TRINITY" run "$W/dense.trin" -p "Once upon a time" -n 24 --temp 0 --no-stop
cmp -s "$W/out" "$W/g1" || fail "greedy output differs between two runs"
expect 0 "$TRINITY" run "$W/base.h5" -p "Once upon a time" -n 24 --temp 0 --no-stop
cmp -s "$W/out" "$W/g1" || fail "greedy output of .h5 and .trin differ"
[ -s "$W/g1" ] || fail "no output"

# seeded sampling repeats
expect 0 "$TRINITY" run "$W/dense.trin" -p "Hi" -n 32 --temp 1 --top-k 50 --top-p 0.9 --repeat-penalty 1.2 --seed 7 --no-stop
cp "$W/out" "$W/s1"
expect 0 "$TRINITY" run "$W/dense.trin" -p "Hi" -n 32 --temp 1 --top-k 50 --top-p 0.9 --repeat-penalty 1.2 --seed 7 --no-stop
cmp -s "$W/out" "$W/s1" || fail "same seed, different output"
expect 0 "$TRINITY" run "$W/dense.trin" -p "Hi" -n 32 --temp 1 --seed 8 --no-stop
cmp -s "$W/out" "$W/s1" && fail "different seeds, same output"

# T2 model through the int8 kernels; exact mode; template
expect 0 "$TRINITY" run "$W/t2.trin" -p "Hello" -n 16 --temp 0 --threads 2
grep -q 'T2' "$W/err" || fail "t2 description: $(cat "$W/err")"
expect 0 "$TRINITY" run "$W/t2.trin" -p "Hello" -n 16 --temp 0 --exact
expect 0 "$TRINITY" run "$W/dense.trin" -p "Say hi" -n 8 --template trinity
expect 0 "$TRINITY" run "$W/dense.trin" -p "Say hi" -n 8 --template alpaca
expect 0 "$TRINITY" run "$W/dense.trin" -p "x" -n 0
expect 0 "$TRINITY" run "$W/dense.trin" -p "x" -n 8 --ctx 6 --no-stop
grep -q 'context' "$W/err" || fail "--ctx 6: no note that the context is full"

# interactive: two lines, then EOF
printf 'first question\nsecond one\n' | "$TRINITY" run "$W/dense.trin" -i -n 6 --temp 0 --no-stop >"$W/out" 2>"$W/err"
[ $? = 0 ] || fail "interactive exit"
[ "$(wc -l <"$W/out")" -ge 2 ] || fail "interactive: expected two answers, got: $(cat "$W/out")"
grep -q 'generation: 12 tokens' "$W/err" || fail "interactive stats: $(cat "$W/err")"
printf '' | "$TRINITY" run "$W/dense.trin" -i >"$W/out" 2>"$W/err" || fail "interactive, empty stdin"

# bad input: exit 1, one error line
printf 'junk' >"$W/junk.trin"
expect 1 "$TRINITY" run "$W/junk.trin" -p hi
one_error "junk model"
expect 1 "$TRINITY" run "$W/missing.trin" -p hi
one_error "missing model"
head -c 1000 "$W/t2.trin" >"$W/short.trin"
expect 1 "$TRINITY" run "$W/short.trin" -p hi
one_error "truncated model"
expect 1 "$TRINITY" run "$W/dense.trin" -p "$(head -c 3000 /dev/zero | tr '\0' 'a')" --ctx 16
one_error "prompt longer than the context"
expect 1 "$TRINITY" run "$W/dense.trin" -p hi --tokenizer "$W/junk.trin"

# usage errors: exit 2
expect 2 "$TRINITY" run
expect 2 "$TRINITY" run "$W/dense.trin"
expect 2 "$TRINITY" run "$W/dense.trin" -p
expect 2 "$TRINITY" run "$W/dense.trin" -p hi --temp -1
expect 2 "$TRINITY" run "$W/dense.trin" -p hi --temp abc
expect 2 "$TRINITY" run "$W/dense.trin" -p hi --top-p 0
expect 2 "$TRINITY" run "$W/dense.trin" -p hi --top-p 1.5
expect 2 "$TRINITY" run "$W/dense.trin" -p hi --top-k -1
expect 2 "$TRINITY" run "$W/dense.trin" -p hi --repeat-penalty 0
expect 2 "$TRINITY" run "$W/dense.trin" -p hi -n x
expect 2 "$TRINITY" run "$W/dense.trin" -p hi --template chatml
expect 2 "$TRINITY" run "$W/dense.trin" -p hi --bogus
expect 2 "$TRINITY" run a.trin b.trin -p hi
expect 0 "$TRINITY" run --help
grep -q 'usage: trinity run' "$W/out" || fail "run --help"

# bench decode, once `trinity bench decode` is wired
if "$TRINITY" bench decode --help >/dev/null 2>&1; then
    expect 0 "$TRINITY" bench decode --preset tiny --tokens 8 --threads 2 --json
    grep -q '"bench":"decode"' "$W/out" && grep -q '"ratio"' "$W/out" || fail "bench decode json: $(cat "$W/out")"
    expect 2 "$TRINITY" bench decode --preset nope
fi

[ "$fails" = 0 ] && echo "test_run.sh: all passed" || echo "test_run.sh: $fails failed"
[ "$fails" = 0 ]
