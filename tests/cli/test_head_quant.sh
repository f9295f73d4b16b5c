#!/usr/bin/env bash
# Quantized LM head / embedding table on a real model (docs/TRIN.md "What a quantized head costs"):
# SmolLM2-135M-Instruct imported, exported with a dense F16 body and the tied head/embedding table as F16,
# Q8 and Q4, then `trinity eval --fast --reference` over 4,096 teacher-forced WikiText-2 positions (8
# windows of 512). Asserts the issue's perplexity bar for Q8 (within 0.5% of the F16 head) and the measured
# top-1 agreement with a margin (8-bit rows alone reach ~97% on this model, docs/TRIN.md says why); Q4 must
# still be a working model. With --exact-head (the head's F16 rows stored beside it, its best 32 logits
# re-scored from them) Q8 and Q4 must meet the issue's 99.5% and Q8 its 0.5% (test_rescore checks that
# --rescore 0 is the Q8 head alone). Then the command-line surface: --head/--embed/--exact-head usage errors (exit
# 2), --embed on a tied model (exit 1, one error line), the CUDA engine's refusal, trinity info.
# ctest-label: slow
set -u
TRINITY=${TN_TRINITY:?TN_TRINITY not set}
GGUF=${TN_SHARED_DATA:-/nonexistent}/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
WIKI=${TN_SHARED_DATA:-/nonexistent}/wikitext2/wiki.test.raw
for f in "$GGUF" "$WIKI"; do
    if [ ! -r "$f" ]; then
        echo "SKIPPED: $f not found"
        exit 77
    fi
done
W=$(mktemp -d /tmp/tn_cli_head_quant.XXXXXX)
trap 'rm -rf "$W"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
expect() {
    local want=$1
    shift
    "$@" >"$W/out" 2>"$W/err"
    local got=$?
    [ "$got" = "$want" ] || { fail "exit $got (want $want): $*"; sed 's/^/    /' "$W/err" | head -5; }
}
one_error() {
    [ "$(wc -l <"$W/err")" = 1 ] && grep -q '^trinity: error: ' "$W/err" || { fail "not one error line: $*"; head -5 "$W/err"; }
}

expect 0 "$TRINITY" import "$GGUF" -o "$W/base.h5"
for h in f16 q8 q4; do
    expect 0 "$TRINITY" export "$W/base.h5" -o "$W/$h.trin" --dtype f16 --head "$h"
done
grep -q 'Q4 x1' "$W/out" || fail "q4 export summary: $(cat "$W/out")"
for h in q8 q4; do
    expect 0 "$TRINITY" export "$W/base.h5" -o "$W/${h}x.trin" --dtype f16 --head "$h" --exact-head
done
expect 0 "$TRINITY" prepare text --tokenizer "$W/f16.trin" --in "$WIKI" -o "$W/wiki.h5"

# cost of each head against the F16 one: ppl ratio and top-1 agreement, from the --json line
check() { # NAME MAX_PPL_RATIO MIN_TOP1 [EVAL OPTIONS]
    local name=$1 maxr=$2 mint=$3
    shift 3
    expect 0 "$TRINITY" eval "$W/$name.trin" --data "$W/wiki.h5" --fast --reference "$W/f16.trin" --seq-len 512 \
        --max-windows 8 --json "$@"
    tail -1 "$W/out" | awk -v name="$name$*" -v maxr="$maxr" -v mint="$mint" '{
        match($0, /"ppl":[0-9.e+-]+/); p = substr($0, RSTART + 6, RLENGTH - 6) + 0;
        match($0, /"ref_ppl":[0-9.e+-]+/); r = substr($0, RSTART + 10, RLENGTH - 10) + 0;
        match($0, /"top1_agree":[0-9.e+-]+/); a = substr($0, RSTART + 13, RLENGTH - 13) + 0;
        match($0, /"tokens":[0-9]+/); n = substr($0, RSTART + 9, RLENGTH - 9) + 0;
        printf "%s head: ppl %.4f vs F16 %.4f (%+.3f%%), top-1 agreement %.4f over %d positions\n", name, p, r, 100 * (p / r - 1), a, n;
        if (n != 4096 || p / r > maxr || a < mint) exit 1 }' || fail "$name $* head outside its bounds: $(tail -1 "$W/out")"
}
check q8 1.005 0.96
check q4 1.20 0.70
check q8x 1.005 0.995
check q4x 1.05 0.995


# command line
expect 2 "$TRINITY" export "$W/base.h5" -o "$W/x.trin" --head q5
expect 2 "$TRINITY" export "$W/base.h5" -o "$W/x.trin" --embed
expect 2 "$TRINITY" export "$W/base.h5" -o "$W/x" --format hf --head q8
expect 2 "$TRINITY" export "$W/base.h5" -o "$W/x.trin" --head f16 --exact-head
expect 2 "$TRINITY" export "$W/base.h5" -o "$W/x.gguf" --head q8 --exact-head
expect 2 "$TRINITY" eval "$W/q8x.trin" --data "$W/wiki.h5" --rescore 1025
expect 1 "$TRINITY" export "$W/base.h5" -o "$W/x.trin" --embed q8
one_error "--embed on a tied model"
grep -q 'ties its embeddings' "$W/err" || fail "tied --embed message: $(cat "$W/err")"
[ -e "$W/x.trin" ] && fail "a refused export left a file"
expect 0 "$TRINITY" info "$W/q8.trin"
grep -q 'TRIN v3' "$W/out" && grep -q 'model.embed_tokens.weight *Q8' "$W/out" || fail "info q8.trin: $(head -3 "$W/out")"
expect 0 "$TRINITY" info "$W/q8x.trin"
grep -q 'TRIN v4' "$W/out" && grep -q 'lm_head.exact *F16' "$W/out" || fail "info q8x.trin: $(grep -m3 'TRIN\|exact' "$W/out")"
if "$TRINITY" run "$W/q8.trin" --device cuda -n 1 -p hi >"$W/out" 2>"$W/err"; then
    fail "the CUDA engine ran a Q8 table"
else
    one_error "cuda refusal"
    grep -q 'no Q8 kernels\|CUDA\|cuda' "$W/err" || fail "cuda refusal message: $(cat "$W/err")"
fi
expect 0 "$TRINITY" export "$W/base.h5" -o "$W/q8.gguf" --dtype f16 --head q8
grep -q 'Q8_0' "$W/out" || fail "gguf --head q8 summary: $(cat "$W/out")"

[ "$fails" = 0 ] && echo "test_head_quant: all passed"
exit $((fails > 0))
