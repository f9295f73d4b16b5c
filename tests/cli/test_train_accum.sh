#!/usr/bin/env bash
# Gradient accumulation weighs tokens, not micro-batches: on answer-masked SFT data (answers of very
# different lengths), one step of batch 2 and one step of batch 1 x accum 2 over the same two examples
# must log the same loss and grad_norm (both are the mean over all counted tokens). The mean of
# per-micro-batch means, which trinity used before, fails this (loss 5.514 against 5.555).
source "$(dirname "$0")/helpers/train_common.sh"

# Six records: short and long answers alternate, so any two consecutive examples differ in length.
"$PY" - "$w/sft.json" <<'PY'
import json, sys
recs = []
for i in range(6):
    out = "ok." if i % 2 == 0 else "A much longer answer, that goes on and on for many more bytes. " * 3
    recs.append({"instruction": f"Question {i}?", "input": "", "output": out})
json.dump(recs, open(sys.argv[1], "w"))
PY
"$T" prepare alpaca --tokenizer bytes --in "$w/sft.json" -o "$w/sft.h5" > /dev/null

cat > "$w/run.ini" <<INI
[model]
dim = 32
n_layers = 1
n_heads = 2
ffn_dim = 64
[data]
train = $w/sft.h5
tokenizer = bytes
sft_pack = false
[train]
batch = 2
seq_len = 256
accum = 1
steps = 1
seed = 3
threads = 2
[optim]
lr = 1e-3
INI
"$T" train "$w/run.ini" "train.out_dir=$w/b2" 2> "$w/b2.err" || { cat "$w/b2.err"; fail "batch 2 run"; }
"$T" train "$w/run.ini" "train.out_dir=$w/a2" train.batch=1 train.accum=2 2> "$w/a2.err" \
  || { cat "$w/a2.err"; fail "accum 2 run"; }
"$PY" - "$w/b2/log.jsonl" "$w/a2/log.jsonl" <<'PY'
import json, sys
a, b = ([r for r in map(json.loads, open(p)) if "loss" in r][0] for p in sys.argv[1:3])
print(f"batch 2: loss {a['loss']:.7f} grad_norm {a['grad_norm']:.7f}; batch 1 x accum 2: loss {b['loss']:.7f} grad_norm {b['grad_norm']:.7f}")
for k in ("loss", "grad_norm"):
    assert abs(a[k] - b[k]) <= 1e-5 * abs(a[k]), (k, a[k], b[k])
PY
echo PASS
