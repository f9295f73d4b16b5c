#!/usr/bin/env bash
# Real-model evolution: SmolLM2-135M-Instruct (scripts/get-smollm2.sh) evolved into ternary (and 4-bit primal15)
# weights by STE, with and without distillation from the dense model, at equal token budgets; every row is
# measured the same way. Prints a Markdown table (also WORK/results.md). docs/EVOLVE.md has the results.
#
# usage: scripts/evolve-real.sh [--device cpu|cuda] [--work DIR] [--tokens N] [--sweep-tokens N]
#                               [--rows "NAME ..."] [--threads N]
#   --device        where training and evaluation run (default cpu; cuda needs a CUDA build, docs/CUDA.md)
#   --work          work directory (default /tmp/trinity-evolve-real); one run directory per row
#   --tokens        training tokens of every row (default 300000)
#   --sweep-tokens  tokens of each learning-rate sweep run (default 100000)
#   --rows          a subset of the rows below (default: all, in order)
#   --threads       [train] threads and OMP_NUM_THREADS (default: all cores)
# env:  TN_TRINITY (default build/trinity), TN_PYTHON (python3 with numpy; default /usr/bin/python3),
#       TN_SHARED_DATA (default ../shared/data next to the repository: alpaca/, wikitext2/, smollm2/)
#
# Rows (each at --tokens tokens, batch 2 x 512 tokens x accum 2 = 2048 tokens per optimizer step):
#   dense           the model as imported (Q4_1 dequantized): no training
#   dense-sft       dense AdamW SFT, the control: what the same tokens do without quantization
#   ptq             ternary (per-row absmean) snapped without training
#   sweep-LR        STE ternary at --sweep-tokens, for LR in $SWEEP_LRS; the best Alpaca-val loss picks the lr
#   ste             STE ternary: per-row absmean, λ warm-up over the first 10% of steps, int8 activations
#   ste-kd          + distillation from the dense model (alpha 0.5, temperature 2)
#   ste-kd-lean     + 8-bit AdamW state, recompute = layer, bf16 shadow weights (the memory-lean recipe)
#   primal15-kd     4-bit primal15 grid (per-row std scale) STE + distillation
# Measured per row: Alpaca-val loss (answer tokens of the 200 held-out records), WikiText-2 test perplexity
# on the first $WIKI_WINDOWS windows of 512 tokens, training time, tokens/s and peak RSS.
# Resumable: a row whose result.json exists is skipped; a row interrupted mid-run resumes from its newest
# checkpoint. Delete WORK/rows/NAME to redo a row.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
device=cpu W=/tmp/trinity-evolve-real TOKENS=300000 SWEEP_TOKENS=100000 ROWS="" THREADS=""
while [ $# -gt 0 ]; do
  case $1 in
    --device) device=$2; shift 2 ;;
    --work) W=$2; shift 2 ;;
    --tokens) TOKENS=$2; shift 2 ;;
    --sweep-tokens) SWEEP_TOKENS=$2; shift 2 ;;
    --rows) ROWS=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "evolve-real: unknown argument $1 (see --help)" >&2; exit 1 ;;
  esac
done
T=${TN_TRINITY:-$root/build/trinity}
[ -x "$T" ] || { echo "evolve-real: no trinity binary at $T (build first, or set TN_TRINITY)" >&2; exit 1; }
PY=${TN_PYTHON:-/usr/bin/python3}
DATA=${TN_SHARED_DATA:-$root/../shared/data}
[ -f "$DATA/alpaca/alpaca_data_first2000.json" ] || { echo "evolve-real: no $DATA/alpaca (set TN_SHARED_DATA)" >&2; exit 1; }
[ -f "$DATA/wikitext2/wiki.test.raw" ] || { echo "evolve-real: no $DATA/wikitext2 (set TN_SHARED_DATA)" >&2; exit 1; }
[ -n "$THREADS" ] && export OMP_NUM_THREADS=$THREADS
SWEEP_LRS=${SWEEP_LRS:-"1e-4 3e-4 1e-3"}
WIKI_WINDOWS=64
B=2 SEQ=512 ACCUM=2
tokens_per_step=$((B * SEQ * ACCUM))
mkdir -p "$W/rows"
log() { echo "[evolve-real] $(date +%H:%M:%S) $*" >&2; }

# ---- model and data ------------------------------------------------------------------------------------------
gguf=$(TN_SHARED_DATA=$DATA "$root/scripts/get-smollm2.sh" "$W/model")
base=$W/base.h5
[ -f "$base" ] || "$T" import "$gguf" -o "$base" >&2
if [ ! -f "$W/alpaca-val.h5" ]; then # 1,800 train / 200 val records (seeded), the Stanford Alpaca prompt
  "$T" prepare alpaca --tokenizer "$gguf" --in "$DATA/alpaca/alpaca_data_first2000.json" -o "$W/alpaca.h5" \
    --template alpaca --max-len $SEQ --val-fraction 0.1 --seed 0 --val-out "$W/alpaca-val.h5" >&2
fi
if [ ! -f "$W/wiki.h5" ]; then # the test split as one document (CRLF → LF)
  tr -d '\r' < "$DATA/wikitext2/wiki.test.raw" > "$W/wiki.txt"
  "$T" prepare text --tokenizer "$gguf" --in "$W/wiki.txt" -o "$W/wiki.h5" --doc-split none >&2
fi

# ---- helpers ---------------------------------------------------------------------------------------------------
json() { "$PY" -c 'import json,sys; print(json.loads(sys.stdin.read())[sys.argv[1]])' "$1"; }
evaluate() { # evaluate CKPT OUT_JSON: Alpaca-val loss and WikiText-2 perplexity
  local a wk
  a=$("$T" eval "$1" --data "$W/alpaca-val.h5" --seq-len $SEQ --batch 4 --device "$device" --json)
  wk=$("$T" eval "$1" --data "$W/wiki.h5" --seq-len $SEQ --batch 4 --max-windows $WIKI_WINDOWS --device "$device" --json)
  "$PY" - "$2" "$a" "$wk" <<'PY'
import json, sys
a, w = json.loads(sys.argv[2]), json.loads(sys.argv[3])
json.dump({"alpaca_val_loss": a["loss"], "alpaca_val_tokens": a["tokens"], "wiki_ppl": w["ppl"],
           "wiki_tokens": w["tokens"]}, open(sys.argv[1], "w"))
PY
}
want() { [ -z "$ROWS" ] || [[ " $ROWS " == *" $1 "* ]]; }

# The config every training row shares; the rows differ by overrides.
cat > "$W/sft.ini" <<INI
[model]
init = $base
[data]
train = $W/alpaca.h5
val = $W/alpaca-val.h5
mode = sft
sft_pack = true
[train]
batch = $B
seq_len = $SEQ
accum = $ACCUM
log_every = 1
ckpt_every = 20
keep_ckpts = 1
seed = 7
device = $device
[optim]
schedule = cosine
grad_clip = 1.0
INI
COMMON=()
[ -n "$THREADS" ] && COMMON=("train.threads=$THREADS")
STE=(quant.grid=ternary quant.scale=absmean quant.scale_per_row=true quant.act_bits=8)
KD=("distill.teacher=$base" distill.alpha=0.5 distill.temperature=2)
LEAN=(optim.state_bits=8 train.recompute=layer quant.shadow=bf16)

# train_row NAME TOKENS LR OVERRIDES...: train (or resume), evaluate, write rows/NAME/result.json.
train_row() {
  local name=$1 tokens=$2 lr=$3; shift 3
  local d=$W/rows/$name steps warm lw
  [ -f "$d/result.json" ] && { log "$name: done before"; return; }
  steps=$(((tokens + tokens_per_step - 1) / tokens_per_step))
  warm=$((steps / 20)) lw=$((steps / 10))
  local args=("train.out_dir=$d/run" "train.steps=$steps" "optim.lr=$lr" "optim.warmup_steps=$warm" "${COMMON[@]}" "$@")
  # λ warm-up only where the row quantizes
  [[ " $* " == *" quant.grid="* ]] && args+=("quant.lambda_warmup_steps=$lw")
  mkdir -p "$d"
  local resume=() ckpt
  ckpt=$d/run/$(printf 'ckpt-%06d.h5' "$steps")
  if [ ! -f "$ckpt" ]; then
    ls "$d"/run/ckpt-*.h5 > /dev/null 2>&1 && resume=(--resume)
    log "$name: $steps steps x $tokens_per_step tokens, lr $lr ${resume[*]}"
    "$T" train "$W/sft.ini" "${args[@]}" "${resume[@]}" 2>> "$d/train.err" || { tail -5 "$d/train.err" >&2; exit 1; }
  fi
  evaluate "$ckpt" "$d/eval.json"
  "$PY" - "$d" "$name" "$lr" "$steps" "$tokens_per_step" <<'PY'
import json, sys
d, name, lr, steps, tps = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
rows = [json.loads(l) for l in open(f"{d}/run/log.jsonl")]
st = [r for r in rows if "loss" in r and "step" in r]
end = [r for r in rows if "peak_rss_bytes" in r][-1]
train_s = sum(tps / r["tokens_per_s"] for r in st)  # the steps' own times (a resumed run's pause excluded)
res = json.load(open(f"{d}/eval.json"))
res.update(name=name, lr=lr, steps=steps, tokens=steps * tps, train_s=train_s, tokens_per_s=steps * tps / train_s,
           peak_rss_bytes=end["peak_rss_bytes"], final_train_loss=st[-1]["loss"],
           sample=([r["sample"] for r in rows if "sample" in r] or [""])[-1])
for k in ("loss_ce", "loss_kd"):
    if k in st[-1]: res["final_" + k] = st[-1][k]
json.dump(res, open(f"{d}/result.json", "w"), indent=1)
PY
  log "$name: $(tr -d '\n ' < "$d/result.json")"
}

# ---- rows ------------------------------------------------------------------------------------------------------
if want dense && [ ! -f "$W/rows/dense/result.json" ]; then
  mkdir -p "$W/rows/dense"
  t0=$(date +%s.%N)
  evaluate "$base" "$W/rows/dense/eval.json"
  "$PY" - "$W/rows/dense" "$t0" "$(date +%s.%N)" <<'PY'
import json, sys
res = json.load(open(f"{sys.argv[1]}/eval.json"))
res.update(name="dense", tokens=0, eval_s=float(sys.argv[3]) - float(sys.argv[2]))
json.dump(res, open(f"{sys.argv[1]}/result.json", "w"), indent=1)
PY
  log "dense: $(tr -d '\n ' < "$W/rows/dense/result.json")"
fi

# PTQ: a one-step run at lr 1e-30 writes a checkpoint whose shadow weights are the dense ones (each moved by at
# most 1e-30: checked; far below any grid boundary's resolution) with the [quant] group, which `trinity eval`
# snaps (λ = 1).
if want ptq && [ ! -f "$W/rows/ptq/result.json" ]; then
  d=$W/rows/ptq
  mkdir -p "$d"
  "$T" train "$W/sft.ini" "train.out_dir=$d/run" train.steps=1 optim.lr=1e-30 optim.weight_decay=0 train.accum=1 \
    "${COMMON[@]}" "${STE[@]}" 2> "$d/train.err" || { tail -5 "$d/train.err" >&2; exit 1; }
  "$PY" - "$base" "$d/run/ckpt-000001.h5" <<'PY'
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1], "r")["params"], h5py.File(sys.argv[2], "r")["params"]
names = []
a.visit(lambda n: names.append(n) if isinstance(a[n], h5py.Dataset) else None)
diff = max(float(np.abs(a[n][()].astype(np.float64) - b[n][()]).max()) for n in names)
assert names and diff <= 1e-29, f"PTQ checkpoint's weights differ from the dense ones by {diff}"
PY
  evaluate "$d/run/ckpt-000001.h5" "$d/eval.json"
  "$PY" -c 'import json,sys; r=json.load(open(sys.argv[1])); r.update(name="ptq", tokens=0); json.dump(r, open(sys.argv[2], "w"), indent=1)' \
    "$d/eval.json" "$d/result.json"
  log "ptq: $(tr -d '\n ' < "$d/result.json")"
fi

want dense-sft && train_row dense-sft "$TOKENS" 3e-5

best_lr=""
for lr in $SWEEP_LRS; do
  want "sweep-$lr" || want sweep || want ste || continue
  train_row "sweep-$lr" "$SWEEP_TOKENS" "$lr" "${STE[@]}"
done
# The sweep's best learning rate (lowest Alpaca-val loss) for every STE row.
# shellcheck disable=SC2086 # one argument per learning rate
best_lr=$("$PY" - "$W/rows" $SWEEP_LRS <<'PY'
import json, os, sys
res = [json.load(open(p)) for lr in sys.argv[2:] if os.path.exists(p := f"{sys.argv[1]}/sweep-{lr}/result.json")]
print(min(res, key=lambda r: r["alpaca_val_loss"])["lr"] if res else "")
PY
)
if [ -z "$best_lr" ]; then
  want ste || want ste-kd || want ste-kd-lean || want primal15-kd && { echo "evolve-real: no sweep result" >&2; exit 1; }
else
  log "learning rate from the sweep: $best_lr"
fi
want ste && train_row ste "$TOKENS" "$best_lr" "${STE[@]}"
want ste-kd && train_row ste-kd "$TOKENS" "$best_lr" "${STE[@]}" "${KD[@]}"
want ste-kd-lean && train_row ste-kd-lean "$TOKENS" "$best_lr" "${STE[@]}" "${KD[@]}" "${LEAN[@]}"
want primal15-kd && train_row primal15-kd "$TOKENS" "$best_lr" quant.grid=primal15 quant.scale=std \
  quant.scale_per_row=true quant.act_bits=8 "${KD[@]}"

# ---- table -----------------------------------------------------------------------------------------------------
"$PY" - "$W/rows" "$WIKI_WINDOWS" "$device" <<'PY' | tee "$W/results.md"
import json, os, sys
rows_dir, windows, device = sys.argv[1], sys.argv[2], sys.argv[3]
sweeps = sorted((n for n in os.listdir(rows_dir) if n.startswith("sweep-")), key=lambda n: float(n[len("sweep-"):]))
order = ["dense", "dense-sft", "ptq"] + sweeps + ["ste", "ste-kd", "ste-kd-lean", "primal15-kd"]
print("| row | lr | tokens | Alpaca-val loss | WikiText-2 ppl | train time | tokens/s | peak RSS |")
print("|---|---|---|---|---|---|---|---|")
for n in order:
    p = f"{rows_dir}/{n}/result.json"
    if not os.path.exists(p):
        continue
    r = json.load(open(p))
    t = f"{r['train_s'] / 60:.1f} min" if "train_s" in r else "-"
    tps = f"{r['tokens_per_s']:.0f}" if "tokens_per_s" in r else "-"
    rss = f"{r['peak_rss_bytes'] / 2**30:.2f} GiB" if "peak_rss_bytes" in r else "-"
    lr = f"{r['lr']:g}" if "lr" in r else "-"
    ppl = f"{r['wiki_ppl']:.3g}" if r["wiki_ppl"] >= 1e5 else f"{r['wiki_ppl']:,.1f}"
    print(f"| {n} | {lr} | {r['tokens']:,} | {r['alpaca_val_loss']:.4f} | {ppl} | {t} | {tps} | {rss} |")
print(f"\nAlpaca-val: mean NLL of the answer tokens of the 200 held-out records; WikiText-2: test split, the first "
      f"{windows} windows of 512 tokens; device {device}.")
PY
