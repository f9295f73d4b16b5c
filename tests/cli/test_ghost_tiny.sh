#!/usr/bin/env bash
# PRIMAL pre-training of a small ghost model (bytes tokenizer) brings the loss well below the data's
# unigram entropy, and flip_rate is reported every step. Data: WikiText-2 test text when ../shared/data
# is present, else the license texts every Debian machine has.
set -euo pipefail
T=${TN_TRINITY:?}; PY=${TN_PYTHON:-/usr/bin/python3}
"$PY" -c "import h5py, numpy" 2>/dev/null || { echo "SKIPPED: h5py/numpy missing for $PY"; exit 77; }
w=$(mktemp -d); trap 'rm -rf "$w"' EXIT
wiki=${TN_SHARED_DATA:-/nonexistent}/wikitext2/wiki.test.raw
if [ -r "$wiki" ]; then
  echo "data: $wiki"
  head -c 600000 "$wiki" > "$w/train.txt"; tail -c 100000 "$wiki" > "$w/val.txt"
else
  echo "data: /usr/share/common-licenses (no ../shared/data)"
  L=/usr/share/common-licenses; cat "$L/GPL-3" "$L/Apache-2.0" "$L/MPL-2.0" > "$w/train.txt"; cp "$L/LGPL-2.1" "$w/val.txt"
fi
"$T" prepare text --tokenizer bytes --doc-split none --in "$w/train.txt" -o "$w/train.h5" > /dev/null
"$T" prepare text --tokenizer bytes --doc-split none --in "$w/val.txt" -o "$w/val.h5" > /dev/null
cat > "$w/g.ini" <<INI
[model]
dim = 128
n_layers = 4
n_heads = 4
ffn_dim = 352
[data]
train = $w/train.h5
val = $w/val.h5
tokenizer = bytes
[train]
out_dir = $w/run
batch = 8
seq_len = 128
steps = 150
eval_every = 150
eval_batches = 8
threads = 2
[optim]
method = primal
lr = 3e-3
[primal]
init_std = 0.05
c = 0.01
INI
"$T" train "$w/g.ini" 2> "$w/err" || { cat "$w/err"; exit 1; }
"$PY" - "$w/train.h5" "$w/run/log.jsonl" <<'PY'
import json, sys
import h5py, numpy as np
tok = h5py.File(sys.argv[1], "r")["tokens"][:]
p = np.bincount(tok) / len(tok)
p = p[p > 0]
entropy = float(-(p * np.log(p)).sum())
rows = [json.loads(l) for l in open(sys.argv[2])]
steps = [r for r in rows if "loss" in r]
assert len(steps) == 150 and all("flip_rate" in r and "vote_rate" in r for r in steps)
assert any(r["flip_rate"] > 0 for r in steps), "no weight ever flipped"
val = [r for r in rows if "val_loss" in r][-1]["val_loss"]
last = sum(r["loss"] for r in steps[-10:]) / 10
print(f"unigram entropy {entropy:.3f} nats; loss {steps[0]['loss']:.3f} -> {last:.3f} (mean of last 10); val {val:.3f}; "
      f"flip_rate at step 1/150: {steps[0]['flip_rate']:.2e}/{steps[-1]['flip_rate']:.2e}")
assert last < entropy - 0.4 and val < entropy - 0.3, "loss not well below the unigram entropy"
PY
