#!/usr/bin/env bash
# 8-bit AdamW trains as well as fp32 AdamW: a dense byte-level Llama of ghost-tiny's shape (dim 256, 4 layers,
# ffn 704; 3.3M parameters) trained 200 steps on WikiText-2 (wiki.test.raw from $TN_SHARED_DATA) or, when that
# is absent, on the license texts in /usr/share/common-licenses, once with [optim] state_bits = 32 and once with
# 8: the 8-bit run's final loss (mean of the last 10 steps) and its validation loss must be within 2% of the
# fp32 run's, both runs must have learned (loss down by more than 2 nats), and the 8-bit run's moments must take
# a quarter of the memory. About a minute on 2 cores.
# ctest-label: slow
source "$(dirname "$0")/helpers/train_common.sh"

wiki=${TN_SHARED_DATA:-/nonexistent}/wikitext2/wiki.test.raw
if [ -r "$wiki" ]; then
  head -n 2571 "$wiki" > "$w/train.txt"
  tail -n +2572 "$wiki" > "$w/val.txt"
else
  L=/usr/share/common-licenses
  [ -r "$L/Apache-2.0" ] && [ -r "$L/GPL-3" ] \
    || { echo "SKIPPED: neither $wiki nor the license texts in $L are available"; exit 77; }
  find "$L" -maxdepth 1 -type f ! -name Apache-2.0 | sort | xargs cat > "$w/train.txt"
  cp "$L/Apache-2.0" "$w/val.txt"
fi
for s in train val; do
  "$T" prepare text --tokenizer bytes --in "$w/$s.txt" -o "$w/$s-bytes.h5" --doc-split none > /dev/null
done

cat > "$w/tiny.ini" <<INI
[model]
dim = 256
n_layers = 4
n_heads = 4
n_kv_heads = 4
ffn_dim = 704
[data]
train = $w/train-bytes.h5
val = $w/val-bytes.h5
tokenizer = bytes
[train]
batch = 4
seq_len = 64
steps = 200
log_every = 1
eval_every = 200
eval_batches = 8
threads = 2
[optim]
lr = 3e-3
warmup_steps = 20
INI
for b in 32 8; do
  "$T" train "$w/tiny.ini" "train.out_dir=$w/adam$b" "optim.state_bits=$b" 2> "$w/err" || { cat "$w/err"; fail "state_bits $b"; }
done
"$PY" - "$w" <<'PY'
import json, sys
w = sys.argv[1]
res = {}
for b in (32, 8):
    rows = [json.loads(l) for l in open(f"{w}/adam{b}/log.jsonl")]
    loss = [r["loss"] for r in rows if "loss" in r]
    assert len(loss) == 200, len(loss)
    val = [r["val_loss"] for r in rows if "val_loss" in r][-1]
    res[b] = (loss[0], sum(loss[-10:]) / 10, val, rows[0]["memory"]["adam_bytes"])
    print(f"state_bits {b}: loss {loss[0]:.4f} -> {res[b][1]:.4f} (last 10 steps), val {val:.4f}, "
          f"moments {res[b][3]} bytes")
for b in (32, 8):
    assert res[b][0] - res[b][1] > 2.0, ("did not learn", b, res[b])
rel_train = abs(res[8][1] - res[32][1]) / res[32][1]
rel_val = abs(res[8][2] - res[32][2]) / res[32][2]
print(f"8-bit vs fp32: final train loss {100 * rel_train:.2f}%, val loss {100 * rel_val:.2f}% apart")
assert rel_train <= 0.02 and rel_val <= 0.02, (res, rel_train, rel_val)
assert res[8][3] <= res[32][3] / 3.5, res
PY
echo PASS
