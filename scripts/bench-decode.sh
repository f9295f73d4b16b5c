#!/usr/bin/env bash
# Decode benchmark: a random-weight T2 model of TinyLlama-1.1B's shape (22 layers, dim 2048, ffn 5632, 32 heads,
# 4 KV heads, vocab 32000; embeddings and LM head F16), greedy decoding through the TRIN reader and the
# inference engine, next to the memory read bandwidth measured in the same run.
#   scripts/bench-decode.sh [--threads N] [--tokens N] [--runs R] [--json] [--preset P]
# Defaults: 2 threads, 128 tokens, 3 runs (each run builds the model and measures bandwidth anew; the best
# run is reported last as a summary). Environment: BUILD_DIR (default build), TN_KERNELS to cap the ISA.
# The machine should be otherwise idle: the threads meet at barriers several hundred times per token, so
# another process taking a core for a few milliseconds shows up directly in the result.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
threads=2 tokens=128 runs=3 json=0 preset=tinyllama-1.1b
while [ $# -gt 0 ]; do
    case "$1" in
    --threads) threads=$2; shift 2 ;;
    --tokens) tokens=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --preset) preset=$2; shift 2 ;;
    --json) json=1; shift ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "bench-decode.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
if [ ! -x "$build/trinity" ]; then
    cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$build" -j "$(nproc)" --target trinity
fi
best=""
best_tps=0
for r in $(seq 1 "$runs"); do
    line=$("$build/trinity" bench decode --preset "$preset" --threads "$threads" --tokens "$tokens" --json)
    [ "$json" = 1 ] && echo "$line"
    tps=$(printf '%s' "$line" | sed -n 's/.*"tok_s":\([0-9.e+-]*\).*/\1/p')
    if awk -v a="$tps" -v b="$best_tps" 'BEGIN{exit !(a > b)}'; then best=$line; best_tps=$tps; fi
    if [ "$json" = 0 ]; then
        printf '%s' "$line" | awk -v r="$r" '{
            match($0, /"tok_s":[0-9.e+-]+/); t = substr($0, RSTART + 8, RLENGTH - 8)
            match($0, /"bandwidth_gb_s":[0-9.e+-]+/); b = substr($0, RSTART + 17, RLENGTH - 17)
            match($0, /"bound_tok_s":[0-9.e+-]+/); u = substr($0, RSTART + 14, RLENGTH - 14)
            match($0, /"ratio":[0-9.e+-]+/); q = substr($0, RSTART + 8, RLENGTH - 8)
            printf "run %d: %.1f tok/s, bandwidth %.1f GB/s, bound %.1f tok/s, ratio %.2f\n", r, t, b, u, q }'
    fi
done
if [ "$json" = 0 ]; then
    echo "best: $best"
    awk -v t="$best_tps" 'BEGIN { if (t >= 60) print "target >= 60 tok/s: met"; else print "target >= 60 tok/s: not met" }'
fi
