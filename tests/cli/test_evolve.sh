#!/usr/bin/env bash
# "Evolution works", CI-sized (scripts/evolve-experiment.sh is the full experiment, docs/EVOLVE.md):
# train a tiny dense byte-level model, snap it to ternary without training (PTQ: a 1-step run with
# lr 1e-30 and no weight decay, whose shadow weights are checked bit-identical to the dense ones), then
# evolve it with STE from the dense checkpoint; the snapped model must recover at least half of the gap
# (ppl_ptq - ppl_dense), and PTQ must actually hurt (a gap of at least 10% of the dense perplexity).
# Text: /usr/share/common-licenses (Debian/Ubuntu), else $TN_SHARED_DATA/wikitext2/wiki.test.raw, else skip.
set -euo pipefail
T=${TN_TRINITY:?}; PY=${TN_PYTHON:-/usr/bin/python3}
"$PY" -c "import h5py, numpy" 2>/dev/null || { echo "SKIPPED: h5py/numpy missing for $PY"; exit 77; }
w=$(mktemp -d); trap 'rm -rf "$w"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# Train text and a held-out val text, split by document.
if [ -d /usr/share/common-licenses ] && [ -f /usr/share/common-licenses/GPL-3 ] && [ -f /usr/share/common-licenses/Apache-2.0 ]; then
  for f in /usr/share/common-licenses/*; do
    case $(basename "$f") in GPL-2|Apache-2.0) ;; *) [ -L "$f" ] || cat "$f" >> "$w/train.txt" ;; esac
  done
  cat /usr/share/common-licenses/GPL-2 /usr/share/common-licenses/Apache-2.0 > "$w/val.txt"
elif [ -f "${TN_SHARED_DATA:-/nonexistent}/wikitext2/wiki.test.raw" ]; then
  head -n 1100 "$TN_SHARED_DATA/wikitext2/wiki.test.raw" > "$w/train.txt"
  tail -n 200 "$TN_SHARED_DATA/wikitext2/wiki.test.raw" > "$w/val.txt"
else
  echo "SKIPPED: neither /usr/share/common-licenses nor \$TN_SHARED_DATA/wikitext2 is available"; exit 77
fi
echo >> "$w/train.txt"; echo >> "$w/val.txt"  # prepare text drops a last line without a newline
"$T" prepare text --tokenizer bytes --in "$w/train.txt" -o "$w/train.h5" --doc-split none > /dev/null
"$T" prepare text --tokenizer bytes --in "$w/val.txt" -o "$w/val.h5" --doc-split none > /dev/null

cat > "$w/dense.ini" <<INI
[model]
dim = 64
n_layers = 2
n_heads = 4
ffn_dim = 176
[data]
train = $w/train.h5
[train]
out_dir = $w/dense
batch = 16
seq_len = 64
steps = 500
log_every = 50
threads = 1
seed = 1
[optim]
lr = 5e-3
warmup_steps = 20
INI
cat > "$w/ste.ini" <<INI
[model]
init = $w/dense/ckpt-000500.h5
[data]
train = $w/train.h5
[train]
out_dir = $w/ste
batch = 16
seq_len = 64
steps = 60
log_every = 10
threads = 1
seed = 2
[optim]
lr = 2e-3
warmup_steps = 5
[quant]
grid = ternary
scale = absmean
INI
ev() { "$T" eval "$1" --data "$w/val.h5" --seq-len 64 --batch 16 --json 2>/dev/null; }

"$T" train "$w/dense.ini" 2> "$w/dense.err" || { cat "$w/dense.err"; fail "dense run"; }
"$T" train "$w/ste.ini" train.out_dir="$w/ptq" train.steps=1 optim.lr=1e-30 optim.warmup_steps=0 optim.weight_decay=0 \
  2> "$w/ptq.err" || { cat "$w/ptq.err"; fail "PTQ run"; }
"$T" train "$w/ste.ini" 2> "$w/ste.err" || { cat "$w/ste.err"; fail "STE run"; }
dense=$(ev "$w/dense/ckpt-000500.h5"); ptq=$(ev "$w/ptq/ckpt-000001.h5"); ste=$(ev "$w/ste/ckpt-000060.h5")

"$PY" - "$w" "$dense" "$ptq" "$ste" <<'PY' || fail "evolution did not recover"
import json, sys, h5py, numpy as np
w = sys.argv[1]
dense, ptq, ste = (json.loads(a)["ppl"] for a in sys.argv[2:5])
# PTQ is honest: the 1-step lr=1e-30 run left every weight bit-identical; only the [quant] group differs.
a, b = h5py.File(f"{w}/dense/ckpt-000500.h5", "r"), h5py.File(f"{w}/ptq/ckpt-000001.h5", "r")
names = []
a["params"].visit(lambda n: names.append(n) if isinstance(a["params"][n], h5py.Dataset) else None)
assert names and all(np.array_equal(a["params"][n][()], b["params"][n][()]) for n in names), "PTQ weights moved"
assert "quant" in b and "quant" not in a
# Telemetry of the STE run.
rows = [json.loads(l) for l in open(f"{w}/ste/log.jsonl")]
steps = [r for r in rows if "loss" in r]
assert all(r["lambda"] == 1 for r in steps) and "hist_attn" in steps[-1] and "grid_changed" in steps[-1], steps[-1]
rec = (ptq - ste) / (ptq - dense)
print(f"dense ppl {dense:.3f}  PTQ ternary ppl {ptq:.3f}  STE ppl {ste:.3f}  gap recovered {100 * rec:.1f}%")
assert ptq > 1.1 * dense, "PTQ barely hurts: the test model is not a meaningful check"
assert rec >= 0.5, f"recovered only {100 * rec:.1f}% of the PTQ gap"
PY
echo "PASS"
