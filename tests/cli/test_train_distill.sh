#!/usr/bin/env bash
# [distill]: knowledge distillation from a frozen 16-bit dense teacher, in the training loop.
#  - α = 0 without a hidden term is plain training, bit for bit (same losses and gradient norms);
#  - a student that starts as its teacher has KL ≈ 0 at step 1 (the teacher's fp16 rounding only);
#  - the logged terms add up: loss = (1 − α)·loss_ce + α·loss_kd + loss_hidden, every step;
#  - STE (ternary) and PRIMAL students train with a teacher, on the CPU and, where the binary has one (the
#    emulator of a test build, or a GPU), on a CUDA device with the same losses (1e-5 relative);
#  - a teacher of another vocabulary, another tokenizer, or (with hidden_weight) another width: one error line.
source "$(dirname "$0")/helpers/train_common.sh"

common="[data]
train = $w/train.h5
val = $w/val.h5
tokenizer = bytes
[train]
batch = 2
seq_len = 32
accum = 2
steps = 30
threads = 2
[optim]
lr = 3e-3"
printf '[model]\ndim = 64\nn_layers = 3\nn_heads = 4\nn_kv_heads = 2\nffn_dim = 160\nvocab_size = 300\n%s\n%s\n' \
  "tied_embeddings = false" "$common" > "$w/shape.ini"
"$T" train "$w/shape.ini" "train.out_dir=$w/teacher" 2> "$w/err" || { cat "$w/err"; fail "dense teacher"; }
teacher=$w/teacher/ckpt-000030.h5

# A teacher of another width (dim 32) and one of another vocabulary.
"$T" train "$w/shape.ini" "train.out_dir=$w/narrow" model.dim=32 train.steps=2 2> "$w/err" || { cat "$w/err"; fail "narrow"; }
"$T" train "$w/shape.ini" "train.out_dir=$w/vocab" model.vocab_size=320 train.steps=2 2> "$w/err" || { cat "$w/err"; fail "vocab"; }
# A teacher whose tokenizer bytes differ from the student's.
cp "$teacher" "$w/othertok.h5"
"$PY" - "$w/othertok.h5" <<'PY'
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r+") as f:
    blob = f["tokenizer"][()].copy()
    fmt = f["tokenizer"].attrs["format"]
    blob[-1] ^= 0x5a
    del f["tokenizer"]
    f["tokenizer"] = blob
    f["tokenizer"].attrs["format"] = fmt
PY

# A teacher with a weight that binary16 cannot hold.
cp "$teacher" "$w/huge.h5"
"$PY" - "$w/huge.h5" <<'PY'
import sys, h5py
with h5py.File(sys.argv[1], "r+") as f:
    d = f["params/model.layers.1.mlp.up_proj.weight"]
    v = d[()]
    v[3, 5] = 1e6
    d[...] = v
PY

printf '[model]\ninit = %s\n%s\n' "$teacher" "$common" > "$w/base.ini" # the students start from the teacher
student=(train.steps=6 "distill.teacher=$teacher")
ste=(quant.grid=ternary quant.scale_per_row=true quant.act_bits=8)

# α = 0 and no hidden term: the same run as without [distill].
"$T" train "$w/base.ini" "train.out_dir=$w/plain" train.steps=6 "${ste[@]}" 2> "$w/err" ||
  { cat "$w/err"; fail "plain STE"; }
"$T" train "$w/base.ini" "train.out_dir=$w/alpha0" "${student[@]}" distill.alpha=0 "${ste[@]}" 2> "$w/err" ||
  { cat "$w/err"; fail "alpha 0"; }
"$PY" - "$w/plain/log.jsonl" "$w/alpha0/log.jsonl" <<'PY'
import json, sys
a = [(r["loss"], r["grad_norm"]) for r in map(json.loads, open(sys.argv[1])) if "loss" in r]
b = [(r["loss"], r["grad_norm"]) for r in map(json.loads, open(sys.argv[2])) if "loss" in r]
assert len(a) == 6 and a == b, (a, b)
print("alpha = 0: 6 steps bit-identical to training without a teacher")
PY

devices="cpu"
"$T" train "$w/base.ini" "train.out_dir=$w/probe" train.steps=1 train.device=cuda > /dev/null 2>&1 && devices="cpu cuda"
for d in $devices; do
  # The dense student starts as its teacher; the STE and PRIMAL students learn with a KD and a hidden term.
  "$T" train "$w/base.ini" "train.out_dir=$w/dense-$d" "${student[@]}" "train.device=$d" distill.alpha=0.5 \
    2> "$w/err" || { cat "$w/err"; fail "dense student on $d"; }
  # The STE run on CUDA uses the CPU's attention: with the flash kernel, float differences move weights across
  # grid boundaries (docs/CUDA.md); the distillation ops themselves are what this compares.
  TN_CUDA_EMU_CPU_ATTENTION=1 "$T" train "$w/base.ini" "train.out_dir=$w/ste-$d" "${student[@]}" "train.device=$d" \
    "${ste[@]}" distill.alpha=0.7 distill.temperature=2 distill.hidden_weight=0.1 "distill.hidden_layers=0,-1" \
    2> "$w/err" || { cat "$w/err"; fail "STE student on $d"; }
  "$T" train "$w/shape.ini" "train.out_dir=$w/primal-$d" "distill.teacher=$teacher" train.steps=6 "train.device=$d" \
    optim.method=primal primal.init_std=0.05 distill.alpha=0.5 distill.temperature=1 \
    2> "$w/err" || { cat "$w/err"; fail "PRIMAL student on $d"; }
  "$PY" - "$w" "$d" <<'PY'
import json, sys
w, d = sys.argv[1], sys.argv[2]
def steps(run):
    return [r for r in map(json.loads, open(f"{w}/{run}-{d}/log.jsonl")) if "loss" in r]
for run, alpha, hidden in (("dense", 0.5, False), ("ste", 0.7, True), ("primal", 0.5, False)):
    rows = steps(run)
    assert len(rows) == 6, (run, len(rows))
    for r in rows:
        total = (1 - alpha) * r["loss_ce"] + alpha * r["loss_kd"] + (r["loss_hidden"] if hidden else 0)
        assert abs(total - r["loss"]) <= 1e-6 * abs(r["loss"]), (run, r)
        assert ("loss_hidden" in r) == hidden, (run, r)
    print(f"{run} on {d}: loss_ce {rows[0]['loss_ce']:.4f} -> {rows[-1]['loss_ce']:.4f}, "
          f"loss_kd {rows[0]['loss_kd']:.3g} -> {rows[-1]['loss_kd']:.3g}")
dense = steps("dense")
assert dense[0]["loss_kd"] < 1e-4, dense[0]  # the student is its teacher, less the teacher's fp16 rounding
ste = steps("ste")
assert ste[-1]["loss_kd"] < ste[0]["loss_kd"] or ste[-1]["loss_ce"] < ste[0]["loss_ce"], ste
mem = next(r for r in map(json.loads, open(f"{w}/ste-{d}/log.jsonl")) if "memory" in r)["memory"]
assert mem["teacher_bytes"] > 0, mem
PY
done
if [ "$devices" = "cpu cuda" ]; then
  "$PY" - "$w" <<'PY'
import json, sys
w = sys.argv[1]
for run in ("dense", "ste", "primal"):
    a, b = ([r for r in map(json.loads, open(f"{w}/{run}-{d}/log.jsonl")) if "loss" in r] for d in ("cpu", "cuda"))
    for x, y in zip(a, b):
        for k in ("loss", "loss_ce", "loss_kd"):
            assert abs(x[k] - y[k]) <= 1e-5 * max(abs(x[k]), 1e-3), (run, k, x, y)
    print(f"{run}: CPU and CUDA agree to 1e-5 over {len(a)} steps")
PY
fi

expect_fail "teacher vocabulary" "$T" train "$w/base.ini" "train.out_dir=$w/bad" "${student[@]}" \
  "distill.teacher=$w/vocab/ckpt-000002.h5"
expect_fail "teacher tokenizer" "$T" train "$w/base.ini" "train.out_dir=$w/bad" "${student[@]}" \
  "distill.teacher=$w/othertok.h5"
expect_fail "teacher width with hidden_weight" "$T" train "$w/base.ini" "train.out_dir=$w/bad" "${student[@]}" \
  "distill.teacher=$w/narrow/ckpt-000002.h5" distill.hidden_weight=0.1
"$T" train "$w/base.ini" "train.out_dir=$w/narrow-ok" "${student[@]}" "distill.teacher=$w/narrow/ckpt-000002.h5" \
  train.steps=1 2> "$w/err" || { cat "$w/err"; fail "a narrower teacher without hidden_weight"; }
expect_fail "alpha out of range" "$T" train "$w/base.ini" "train.out_dir=$w/bad" "${student[@]}" distill.alpha=1.5
expect_fail "alpha without a teacher" "$T" train "$w/base.ini" "train.out_dir=$w/bad" train.steps=6 distill.alpha=0.5
expect_fail "hidden layer outside the student" "$T" train "$w/base.ini" "train.out_dir=$w/bad" "${student[@]}" \
  distill.hidden_weight=0.1 distill.hidden_layers=3
expect_fail "hidden_weight without a teacher" "$T" train "$w/base.ini" "train.out_dir=$w/bad" train.steps=6 \
  distill.hidden_weight=0.1
expect_fail "hidden_layers without hidden_weight" "$T" train "$w/base.ini" "train.out_dir=$w/bad" "${student[@]}" \
  distill.hidden_layers=1
expect_fail "hidden layer index overflows" "$T" train "$w/base.ini" "train.out_dir=$w/bad" "${student[@]}" \
  distill.hidden_weight=0.1 distill.hidden_layers=99999999999999999999
expect_fail "teacher weight beyond binary16" "$T" train "$w/base.ini" "train.out_dir=$w/bad" "${student[@]}" \
  "distill.teacher=$w/huge.h5"
expect_fail "missing teacher" "$T" train "$w/base.ini" "train.out_dir=$w/bad" "${student[@]}" \
  "distill.teacher=$w/none.h5"
[ ! -e "$w/bad" ] || fail "a refused run left $w/bad behind"
echo PASS
