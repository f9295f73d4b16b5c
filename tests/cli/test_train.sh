#!/usr/bin/env bash
# trinity train: the loss falls on a small learnable shard; validation and checkpoints are written;
# a run resumed from its step-6 checkpoint logs exactly the losses of the uninterrupted run; eval of the
# final checkpoint prints the JSON line; bad inputs fail with one error line and exit 1.
source "$(dirname "$0")/helpers/train_common.sh"

cat > "$w/run.ini" <<INI
[model]
dim = 64
n_layers = 2
n_heads = 4
n_kv_heads = 2
ffn_dim = 160
[data]
train = $w/train.h5
val = $w/val.h5
[train]
out_dir = $w/A
batch = 4
seq_len = 32
accum = 2
steps = 12
eval_every = 6
eval_batches = 4
ckpt_every = 6
seed = 7
threads = 2
[optim]
lr = 3e-3
warmup_steps = 2
INI

"$T" train "$w/run.ini" 2> "$w/A.err" || { cat "$w/A.err"; fail "training run A"; }
[ -f "$w/A/ckpt-000006.h5" ] && [ -f "$w/A/ckpt-000012.h5" ] || fail "checkpoints missing"
"$PY" - "$w/A/log.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
steps = [r for r in rows if "loss" in r]
vals = [r for r in rows if "val_loss" in r]
assert [r["step"] for r in steps] == list(range(1, 13)), steps
for r in steps:
    for k in ("step", "loss", "lr", "grad_norm", "tokens_per_s", "elapsed_s"):
        assert k in r, (k, r)
assert len(vals) == 2 and all("val_ppl" in r for r in vals), vals
first, last = steps[0]["loss"], steps[-1]["loss"]
print(f"loss {first:.4f} -> {last:.4f}; val {vals[0]['val_loss']:.4f} -> {vals[1]['val_loss']:.4f}")
assert last < 0.8 * first, "loss did not fall"
assert vals[1]["val_loss"] < vals[0]["val_loss"]
PY

# Resume from step 6 into another directory: steps 7..12 must match exactly.
"$T" train "$w/run.ini" "train.out_dir=$w/B" --resume-from "$w/A/ckpt-000006.h5" 2> "$w/B.err" \
  || { cat "$w/B.err"; fail "resumed run B"; }
"$PY" - "$w/A/log.jsonl" "$w/B/log.jsonl" <<'PY'
import json, sys
a = {r["step"]: r for r in map(json.loads, open(sys.argv[1])) if "loss" in r}
b = {r["step"]: r for r in map(json.loads, open(sys.argv[2])) if "loss" in r}
assert sorted(b) == list(range(7, 13)), sorted(b)
for s in b:
    assert a[s]["loss"] == b[s]["loss"] and a[s]["grad_norm"] == b[s]["grad_norm"], (s, a[s], b[s])
print("resume: steps 7..12 identical")
PY

# eval --json on the final checkpoint.
out=$("$T" eval "$w/A/ckpt-000012.h5" --data "$w/val.h5" --seq-len 32 --json)
echo "$out" | "$PY" -c 'import json,sys; d=json.loads(sys.stdin.read()); assert set(d)=={"loss","ppl","tokens"}, d; assert d["tokens"]==2999, d; print("eval", d)'

# A RoPE scaling rule from [model] keys: kept in the checkpoint and shown by info; an unknown type is refused.
"$T" train "$w/run.ini" "train.out_dir=$w/R" train.steps=2 train.eval_every=0 train.ckpt_every=2 \
  model.rope_scaling=llama3 model.rope_factor=8 model.rope_original_max_position_embeddings=8 2> "$w/R.err" \
  || { cat "$w/R.err"; fail "training with llama3 RoPE"; }
"$T" info "$w/R/ckpt-000002.h5" > "$w/R.info" 2>&1 || fail "info of the llama3 checkpoint"
grep -q "RoPE scaling llama3, factor 8, low_freq_factor 1, high_freq_factor 4, original_max_position_embeddings 8" \
  "$w/R.info" || { cat "$w/R.info"; fail "info does not show the RoPE rule"; }
expect_fail "RoPE scaling type 'yarn' is not supported" "$T" train "$w/run.ini" "train.out_dir=$w/R2" model.rope_scaling=yarn
grep -q "RoPE scaling type 'yarn' is not supported (default, linear, llama3)" "$w/err" || fail "yarn message"
expect_fail "rope_low_freq_factor < rope_high_freq_factor" "$T" train "$w/run.ini" "train.out_dir=$w/R3" \
  model.rope_scaling=llama3 model.rope_factor=8 model.rope_high_freq_factor=0.5
grep -q "rope_low_freq_factor < rope_high_freq_factor" "$w/err" || fail "llama3 factors message"

# Bad input: one error line, exit 1.
"$PY" "$here/helpers/make_pattern_shard.py" "$w/bad.h5" 2000 64 3 --bad-token
expect_fail "token id >= vocab" "$T" train "$w/run.ini" "data.train=$w/bad.h5" "train.out_dir=$w/C"
expect_fail "eval token >= vocab" "$T" eval "$w/A/ckpt-000012.h5" --data "$w/bad.h5"
expect_fail "missing key" "$T" train "$w/run.ini" "train.steps=" 
sed '/^dim = 64/d' "$w/run.ini" > "$w/nodim.ini"
expect_fail "missing [model] dim" "$T" train "$w/nodim.ini" "train.out_dir=$w/D"
expect_fail "unknown key" "$T" train "$w/run.ini" "train.stpes=3" "train.out_dir=$w/E"
head -c 1000 "$w/A/ckpt-000012.h5" > "$w/trunc.h5"
expect_fail "truncated checkpoint" "$T" eval "$w/trunc.h5" --data "$w/val.h5"
set +e; "$T" train > /dev/null 2>&1; rc=$?; set -e
[ $rc -eq 2 ] || fail "usage error should exit 2, got $rc"
echo "all train CLI checks passed"
