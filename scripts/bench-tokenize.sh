#!/bin/bash
# Tokenizer speed: encode WikiText-2 test (wiki.test.raw, line by line) with trinity and with
# SentencePiece's Python binding (Debian python3-sentencepiece) on the same Llama tokenizer.model,
# check that every id is equal, and print the time ratio trinity / SentencePiece (target <= 1.0).
#
# Times are the best of REPS runs, interleaved so that both see the same machine load:
#   encode-only   trinity: the time inside tn_tokenizer_encode (trinity tokenize --time);
#                 SentencePiece: sp.encode(line) over the lines, and sp.encode(lines, num_threads=1)
#   end to end    whole process: start, load the model, encode, write the ids
# usage: scripts/bench-tokenize.sh [TRINITY_BINARY] [REPS]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
T=${1:-${TN_TRINITY:-$ROOT/build/trinity}}
REPS=${2:-5}
PY=/usr/bin/python3
DATA=${TN_SHARED_DATA:-$ROOT/../shared/data}
MODEL=$DATA/llama-tokenizer/tokenizer.model
TEXT=$DATA/wikitext2/wiki.test.raw
[ -x "$T" ] || { echo "bench-tokenize: no trinity binary at $T (build first, or pass its path)" >&2; exit 2; }
[ -f "$MODEL" ] && [ -f "$TEXT" ] || { echo "bench-tokenize: $DATA lacks tokenizer.model or wiki.test.raw" >&2; exit 2; }
W=$(mktemp -d /tmp/tn_bench_tok.XXXXXX)
trap 'rm -rf "$W"' EXIT

cat >"$W/sp.py" <<'P'
import sys, time
import sentencepiece as spm
model, text, out = sys.argv[1:4]
sp = spm.SentencePieceProcessor(model_file=model)
data = open(text, 'rb').read().decode('utf-8')
lines = data.split('\n')
if data.endswith('\n'):
    lines.pop()
lines = [l[:-1] if l.endswith('\r') else l for l in lines]
t = time.perf_counter()
ids = [sp.encode(l) for l in lines]
loop = time.perf_counter() - t
t = time.perf_counter()
batch = sp.encode(lines, num_threads=1)
batch_t = time.perf_counter() - t
assert batch == ids
with open(out, 'w') as f:
    for x in ids:
        f.write(' '.join(map(str, x)) + '\n')
print(loop, batch_t, sum(map(len, ids)))
P

now() { date +%s.%N; }
best_tr=1e9 best_tr_e2e=1e9 best_sp=1e9 best_spb=1e9 best_sp_e2e=1e9
min() { awk -v a="$1" -v b="$2" 'BEGIN { print (a < b) ? a : b }'; }
for ((r = 0; r < REPS; r++)); do
    t0=$(now)
    "$T" tokenize --tokenizer "$MODEL" --in "$TEXT" --time >"$W/trinity.ids" 2>"$W/trinity.err"
    t1=$(now)
    read -r sp_loop sp_batch n_sp < <("$PY" "$W/sp.py" "$MODEL" "$TEXT" "$W/sp.ids")
    t2=$(now)
    tr=$(awk '{ print $(NF-1) }' "$W/trinity.err")
    best_tr=$(min "$best_tr" "$tr")
    best_tr_e2e=$(min "$best_tr_e2e" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')")
    best_sp=$(min "$best_sp" "$sp_loop")
    best_spb=$(min "$best_spb" "$sp_batch")
    best_sp_e2e=$(min "$best_sp_e2e" "$(awk -v a="$t1" -v b="$t2" 'BEGIN { print b - a }')")
done

if ! cmp -s "$W/trinity.ids" "$W/sp.ids"; then
    echo "bench-tokenize: ids DIFFER from SentencePiece:" >&2
    diff "$W/trinity.ids" "$W/sp.ids" | head -5 >&2
    exit 1
fi
lines=$(wc -l <"$W/sp.ids")
echo "wiki.test.raw: $lines lines, $n_sp tokens, ids identical to SentencePiece $($PY -c 'import sentencepiece; print(sentencepiece.__version__)')"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores (best of $REPS runs)"
awk -v tr="$best_tr" -v sp="$best_sp" -v spb="$best_spb" -v te="$best_tr_e2e" -v se="$best_sp_e2e" 'BEGIN {
    printf "encode only : trinity %.3f s | sentencepiece per-line %.3f s, batch(1 thread) %.3f s\n", tr, sp, spb
    printf "end to end  : trinity %.3f s | sentencepiece %.3f s (python start + model load + write)\n", te, se
    printf "ratio trinity/sentencepiece: %.2f (per-line), %.2f (batch), %.2f (end to end)  target <= 1.0\n", tr / sp, tr / spb, te / se
}'
