#!/usr/bin/env bash
# "Evolution works": train a small dense byte-level Llama on WikiText-2 (wiki.test.raw, articles split
# 9:1 into train/val), snap it to a grid without training (post-training quantization, PTQ), then evolve it
# with STE from the dense checkpoint and measure how much of the PTQ perplexity gap comes back.
# Variants: learning rate, λ warm-up, per-row scales, int8 activations, prime grids; plus a dense control
# that trains the same extra steps without quantization. Prints a Markdown table (also in WORK/results.md).
#
# usage: scripts/evolve-experiment.sh [WORK_DIR]          (default /tmp/trinity-evolve)
# env:   TN_TRINITY      trinity binary (default: build-evo/trinity, then build/trinity)
#        TN_PYTHON       python3 with h5py and numpy (default /usr/bin/python3)
#        TN_SHARED_DATA  folder with wikitext2/wiki.test.raw (default ../shared/data next to the repo)
#        EVO_THREADS     threads per run (default 1: on a shared 2-core box 1 thread is ~3x faster than 2)
#        EVO_DENSE_STEPS dense steps (default 800), EVO_STE_STEPS STE steps (default 200)
#        EVO_RUNS        space-separated subset of run names below (default: all)
# Runs whose final checkpoint is already in WORK_DIR are reused (delete WORK_DIR for a fresh start).
# Time on 2 shared cores: dense ~5 min, each STE run 1-2 min, about 25 min in all. Docs: docs/EVOLVE.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
T=${TN_TRINITY:-}
if [ -z "$T" ]; then
  for c in "$root/build-evo/trinity" "$root/build/trinity"; do [ -x "$c" ] && { T=$c; break; }; done
fi
[ -n "$T" ] && [ -x "$T" ] || { echo "evolve-experiment: no trinity binary (set TN_TRINITY)" >&2; exit 1; }
PY=${TN_PYTHON:-/usr/bin/python3}
DATA=${TN_SHARED_DATA:-$root/../shared/data}
RAW=$DATA/wikitext2/wiki.test.raw
[ -f "$RAW" ] || { echo "evolve-experiment: $RAW not found (set TN_SHARED_DATA)" >&2; exit 1; }
W=${1:-/tmp/trinity-evolve}
TH=${EVO_THREADS:-1}
DS=${EVO_DENSE_STEPS:-800}
SS=${EVO_STE_STEPS:-200}
mkdir -p "$W"
R=$W/results.tsv
: > "$R"
log() { echo "[evolve] $*" >&2; }

# ---- data: WikiText articles (" = Title = " lines), every 10th article to val ----------------------------
"$PY" - "$RAW" "$W" <<'PY'
import re, sys
txt = open(sys.argv[1], encoding="utf-8").read()
arts = [a for a in re.split(r"(?m)^(?= = [^=].* = $)", txt) if a.strip()]
tr = [a for i, a in enumerate(arts) if i % 10 != 9]
va = [a for i, a in enumerate(arts) if i % 10 == 9]
# Each file ends with a newline (prepare text drops a last line without one).
for name, part in (("train.txt", tr), ("val.txt", va)):
    s = "".join(part)
    open(f"{sys.argv[2]}/{name}", "w", encoding="utf-8").write(s if s.endswith("\n") else s + "\n")
print(f"[evolve] {len(arts)} articles: {len(tr)} train, {len(va)} val", file=sys.stderr)
PY
for s in train val; do
  "$T" prepare text --tokenizer bytes --in "$W/$s.txt" -o "$W/$s.h5" --doc-split heading >&2
done

evaluate() {  # evaluate CKPT -> prints ppl; full val shard, 128-token windows
  "$T" eval "$1" --data "$W/val.h5" --seq-len 128 --batch 16 --json 2>/dev/null |
    "$PY" -c 'import json,sys; print(json.loads(sys.stdin.read())["ppl"])'
}
last() {  # last KEY LOG.JSONL -> value of KEY in the last line that has it
  "$PY" - "$1" "$2" <<'PY'
import json, sys
v = [json.loads(l)[sys.argv[1]] for l in open(sys.argv[2]) if sys.argv[1] in json.loads(l)]
print(v[-1] if v else "")
PY
}

# ---- 1. dense model ---------------------------------------------------------------------------------------
cat > "$W/dense.ini" <<INI
[model]
dim = 128
n_layers = 4
n_heads = 4
ffn_dim = 352
tied_embeddings = true
[data]
train = $W/train.h5
val = $W/val.h5
tokenizer = bytes
[train]
out_dir = $W/dense
batch = 16
seq_len = 128
steps = $DS
log_every = 50
eval_every = 200
eval_batches = 16
threads = $TH
seed = 1
[optim]
lr = 3e-3
warmup_steps = 50
INI
DENSE=$W/dense/$(printf 'ckpt-%06d.h5' "$DS")
if [ ! -f "$DENSE" ]; then
  log "dense: $DS steps"
  "$T" train "$W/dense.ini" 2> "$W/dense.err" || { cat "$W/dense.err" >&2; exit 1; }
fi
ppl_dense=$(evaluate "$DENSE")
printf 'dense\t-\t-\t-\t-\t-\t3e-3\t%s\t-\t%s\t%s\t-\n' "$DS" "$ppl_dense" "$(last elapsed_s "$W/dense/log.jsonl")" >> "$R"
log "dense ppl $ppl_dense"

# ---- STE config from the dense checkpoint -----------------------------------------------------------------
cat > "$W/ste.ini" <<INI
[model]
init = $DENSE
[data]
train = $W/train.h5
val = $W/val.h5
[train]
out_dir = $W/ste
batch = 16
seq_len = 128
steps = $SS
log_every = 25
eval_every = 50
eval_batches = 16
threads = $TH
seed = 2
sample_every = $SS
sample_prompt = The
[optim]
lr = 1e-3
warmup_steps = 10
INI

# ---- 2. PTQ: a 1-step run with lr 1e-30 and no weight decay writes a checkpoint with the [quant] group and
# shadow weights bit-identical to the dense ones (checked below); `trinity eval` snaps them (λ = 1). -------
declare -A PTQ
ptq() {  # ptq KEY QUANT_OVERRIDES...
  local key=$1; shift
  local d=$W/ptq-$key
  if [ ! -f "$d/ckpt-000001.h5" ]; then
    "$T" train "$W/ste.ini" "train.out_dir=$d" train.steps=1 train.sample_every=1 optim.lr=1e-30 optim.warmup_steps=0 \
      optim.weight_decay=0 "$@" 2> "$d.err" || { cat "$d.err" >&2; exit 1; }
  fi
  "$PY" - "$DENSE" "$d/ckpt-000001.h5" <<'PY'
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1], "r")["params"], h5py.File(sys.argv[2], "r")["params"]
names = []
a.visit(lambda n: names.append(n) if isinstance(a[n], h5py.Dataset) else None)
bad = [n for n in names if not np.array_equal(a[n][()], b[n][()])]
assert names and not bad, f"PTQ checkpoint's weights differ from the dense ones: {bad}"
PY
  PTQ[$key]=$(evaluate "$d/ckpt-000001.h5")
  log "PTQ $key: ppl ${PTQ[$key]} (sample: $(last sample "$d/log.jsonl"))"
}

# ---- 3. STE evolution --------------------------------------------------------------------------------------
evolve() {  # evolve NAME PTQ_KEY GRID SCALE PER_ROW LAMBDA_WARMUP ACT_BITS LR
  local name=$1 key=$2 grid=$3 scale=$4 row=$5 lw=$6 act=$7 lr=$8
  if [ -n "${EVO_RUNS:-}" ] && [[ " $EVO_RUNS " != *" $name "* ]]; then return; fi
  local q=()
  [ "$grid" != - ] && q=(quant.grid=$grid quant.scale=$scale quant.scale_per_row=$row quant.lambda_warmup_steps=$lw
    quant.act_bits=$act)
  [ "$key" != - ] && [ -z "${PTQ[$key]:-}" ] && ptq "$key" "${q[@]}"
  local d=$W/run-$name final
  final=$d/$(printf 'ckpt-%06d.h5' "$SS")
  if [ ! -f "$final" ]; then
    log "$name: $SS steps"
    "$T" train "$W/ste.ini" "train.out_dir=$d" "optim.lr=$lr" "${q[@]}" 2> "$d.err" || { cat "$d.err" >&2; exit 1; }
  fi
  local p pq=- rec=-
  p=$(evaluate "$final")
  if [ "$key" != - ]; then
    pq=${PTQ[$key]}
    rec=$("$PY" -c "print(f'{($pq - $p) / ($pq - $ppl_dense):.3f}')")
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$grid" "$scale" "$row" "$lw" "$act" "$lr" "$SS" \
    "$pq" "$p" "$(last elapsed_s "$d/log.jsonl")" "$rec" >> "$R"
  log "$name: ppl $p (PTQ $pq, recovered $rec; sample: $(last sample "$d/log.jsonl"))"
}

#      name              ptq-key   grid      scale    row lw  act lr
evolve dense-continued   -         -         -        -   -   -   1e-3
evolve ternary           t         ternary   absmean  0   0   0   1e-3
evolve ternary-lr3e-4    t         ternary   absmean  0   0   0   3e-4
evolve ternary-lr3e-3    t         ternary   absmean  0   0   0   3e-3
evolve ternary-lambda    t         ternary   absmean  0   $((SS / 2)) 0 1e-3
evolve ternary-row       trow      ternary   absmean  1   0   0   1e-3
evolve ternary-row-lambda trow     ternary   absmean  1   $((SS / 2)) 0 1e-3
evolve ternary-act8      tact      ternary   absmean  0   0   8   1e-3
evolve prime7            p7        prime7    std      0   0   0   1e-3
evolve primal15          p15       primal15  std      0   0   0   1e-3

# ---- table ------------------------------------------------------------------------------------------------
"$PY" - "$R" "$ppl_dense" <<'PY' | tee "$W/results.md"
import sys
dense = float(sys.argv[2])
print("| run | grid | scale | per-row | λ warm-up | act bits | lr | steps | PTQ ppl | ppl | time (s) | gap recovered |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for line in open(sys.argv[1]):
    f = line.rstrip("\n").split("\t")
    for i in (8, 9):
        if f[i] != "-": f[i] = f"{float(f[i]):.3f}"
    f[10] = f"{float(f[10]):.0f}"
    if f[11] != "-": f[11] = f"{100 * float(f[11]):.1f}%"
    print("| " + " | ".join(f) + " |")
print(f"\nval: full val shard in 128-token windows; gap recovered = (PTQ − evolved) / (PTQ − dense), dense = {dense:.3f}")
PY
