#!/usr/bin/env bash
# Memory-lean training state: [optim] state_bits = 8 (8-bit AdamW moments) and [quant] shadow = bf16 (bf16 STE
# shadow weights and gradients, stochastic rounding), alone and together, on the CPU and (where the binary has
# one: the emulator of a test build, or a GPU) on a CUDA device.
#  - a run resumed from its step-5 checkpoint continues bit for bit (losses, gradient norms, grid telemetry,
#    and every dataset of the final checkpoint);
#  - the CUDA run gives the CPU run's losses (1e-5 relative; the STE runs use the CPU's attention on the
#    emulator, docs/CUDA.md says why);
#  - the memory plan shrinks as it should and names the STE components;
#  - a bf16 checkpoint's shadows are bf16 values under /params, and eval / export / run read it;
#  - a bf16 checkpoint with 32-bit moments starts a run through [model] init; quant.layers = mlp with bf16
#    shadows trains attention as float;
#  - bad input: state_bits = 7, shadow = fp16, resuming with another state_bits or shadow, or a bf16 run from a
#    dense checkpoint: one error line.
source "$(dirname "$0")/helpers/train_common.sh"

cat > "$w/base.ini" <<INI
[model]
dim = 64
n_layers = 3
n_heads = 4
n_kv_heads = 2
ffn_dim = 160
tied_embeddings = false
[data]
train = $w/train.h5
val = $w/val.h5
[train]
batch = 2
seq_len = 32
accum = 2
steps = 10
eval_every = 5
eval_batches = 2
ckpt_every = 5
keep_ckpts = 5
threads = 2
[optim]
lr = 3e-3
grad_clip = 0.5
[quant]
grid = ternary
scale_per_row = true
act_bits = 8
lambda_warmup_steps = 4
INI

devices="cpu"
"$T" train "$w/base.ini" "train.out_dir=$w/probe" train.steps=1 train.device=cuda > /dev/null 2>&1 && devices="cpu cuda"
declare -A variant=([fp32-32]="" [fp32-8]="optim.state_bits=8" [bf16-32]="quant.shadow=bf16"
                    [bf16-8]="quant.shadow=bf16 optim.state_bits=8")
for d in $devices; do
  for v in fp32-32 fp32-8 bf16-32 bf16-8; do
    run=$w/$v-$d
    # shellcheck disable=SC2086
    TN_CUDA_EMU_CPU_ATTENTION=1 "$T" train "$w/base.ini" "train.out_dir=$run" "train.device=$d" ${variant[$v]} \
      2> "$w/err" || { cat "$w/err"; fail "$v on $d"; }
    mv "$run/ckpt-000010.h5" "$run/full-000010.h5"
    cp "$run/log.jsonl" "$run/full.jsonl"
    # shellcheck disable=SC2086
    TN_CUDA_EMU_CPU_ATTENTION=1 "$T" train "$w/base.ini" "train.out_dir=$run" "train.device=$d" ${variant[$v]} \
      --resume-from "$run/ckpt-000005.h5" 2> "$w/err" || { cat "$w/err"; fail "$v on $d: resume"; }
    "$PY" - "$run" "$v on $d" <<'PY'
import json, sys
import h5py, numpy as np
run, name = sys.argv[1], sys.argv[2]
full = [json.loads(l) for l in open(f"{run}/full.jsonl")]
both = [json.loads(l) for l in open(f"{run}/log.jsonl")]
key = lambda r: (r["step"], r["loss"], r["grad_norm"], r.get("grid_changed"), r.get("hist_mlp"))
a = [key(r) for r in full if "loss" in r and r["step"] > 5]
b = [key(r) for r in both[len(full):] if "loss" in r]
assert len(a) == 5 and a == b, (name, a, b)
va = [r["val_loss"] for r in full if "val_loss" in r]
vb = [r["val_loss"] for r in both[len(full):] if "val_loss" in r]
assert va[-1] == vb[-1], (name, va, vb)
fa, fb = h5py.File(f"{run}/full-000010.h5", "r"), h5py.File(f"{run}/ckpt-000010.h5", "r")
names = []
fa.visit(lambda n: names.append(n) if isinstance(fa[n], h5py.Dataset) and not n.startswith("state/") else None)
bad = [n for n in names if not np.array_equal(fa[n][()], fb[n][()])]
assert not bad, (name, bad[:5])
print(f"{name}: resumed at step 5, steps 6-10 and {len(names)} checkpoint datasets bit-identical")
PY
  done
done

"$PY" - "$w" "$devices" <<'PY'
import json, sys
import h5py, numpy as np
w, devices = sys.argv[1], sys.argv[2].split()
def log(v, d):
    return [json.loads(l) for l in open(f"{w}/{v}-{d}/full.jsonl")]
mem = {v: log(v, "cpu")[0]["memory"] for v in ("fp32-32", "fp32-8", "bf16-32", "bf16-8")}
total = lambda v: mem[v]["planned_bytes"]
assert total("bf16-8") < total("bf16-32") < total("fp32-32") and total("fp32-8") < total("fp32-32"), \
    {v: total(v) for v in mem}
assert mem["bf16-8"]["ste_shadow"] == "bf16" and mem["fp32-32"]["ste_shadow"] == "fp32"
assert mem["fp32-8"]["state_bits"] == 8 and mem["fp32-32"]["state_bits"] == 32
# ternary-quantized weights of the model: 3 layers x (attention 64x64 + 2 x 32x64 + 64x64, MLP 3 x 160x64)
q = 3 * (2 * 64 * 64 + 2 * 32 * 64 + 3 * 160 * 64)
assert mem["bf16-8"]["ste_shadow_bytes"] >= 2 * q and mem["bf16-8"]["ste_grad_bytes"] >= 2 * q, mem["bf16-8"]
assert mem["bf16-8"]["ste_moment_bytes"] < mem["bf16-32"]["ste_moment_bytes"] / 3, (mem["bf16-8"], mem["bf16-32"])
print("memory plans (bytes):", {v: total(v) for v in mem})
# every variant learns, and the lean ones stay close to fp32's losses
base = [r["loss"] for r in log("fp32-32", "cpu") if "loss" in r]
for v in mem:
    l = [r["loss"] for r in log(v, "cpu") if "loss" in r]
    assert l[-1] < l[0] - 0.2, (v, l)
    assert abs(l[-1] - base[-1]) < 0.05 * base[-1], (v, l[-1], base[-1])
    print(f"{v}: loss {l[0]:.4f} -> {l[-1]:.4f} (fp32-32: {base[-1]:.4f})")
# the bf16 checkpoint's shadows are bf16 values, stored as float under /params
f = h5py.File(f"{w}/bf16-8-cpu/full-000010.h5", "r")
wq = f["params/model.layers.1.mlp.up_proj.weight"][()]
assert wq.dtype == np.float32 and np.array_equal(wq.view(np.uint32) & 0xFFFF, np.zeros_like(wq, dtype=np.uint32))
assert f["quant"].attrs["shadow"] in (b"bf16", "bf16") and "adam8" in f["quant"] and "optim8" in f
if "cuda" in devices:
    for v in mem:
        a = [r["loss"] for r in log(v, "cpu") if "loss" in r]
        b = [r["loss"] for r in log(v, "cuda") if "loss" in r]
        err = max(abs(x - y) / abs(x) for x, y in zip(a, b))
        assert err <= 1e-5, (v, a, b)
        print(f"{v}: CPU and CUDA losses agree to {err:.1e}")
PY

# The bf16 checkpoint is an ordinary checkpoint for eval, export and run.
ck=$w/bf16-8-cpu/full-000010.h5
"$T" eval "$ck" --data "$w/val.h5" --seq-len 32 --json > "$w/e1" 2> "$w/err" || { cat "$w/err"; fail "eval"; }
"$T" export "$ck" -o "$w/m.trin" > /dev/null 2> "$w/err" || { cat "$w/err"; fail "export"; }
"$T" eval "$w/m.trin" --data "$w/val.h5" --seq-len 32 --json > "$w/e2" 2> "$w/err" || { cat "$w/err"; fail "eval .trin"; }
"$PY" - "$w/e1" "$w/e2" "$w/bf16-8-cpu/full.jsonl" <<'PY'
import json, sys
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert abs(a["loss"] - b["loss"]) <= 1e-4 * a["loss"], (a, b)
print(f"bf16 checkpoint: eval loss {a['loss']:.5f}, exported .trin {b['loss']:.5f}")
PY

# A bf16 checkpoint with 32-bit moments (bf16-32) starts a new run through [model] init (its /quant moments are
# not read by a plain load), and eval reads it.
{ printf '[model]\ninit = %s\n' "$w/bf16-32-cpu/full-000010.h5"; sed '1,/^\[data\]/{/^\[data\]/!d}' "$w/base.ini"; } > "$w/init.ini"
"$T" train "$w/init.ini" "train.out_dir=$w/from-bf16" train.steps=2 2> "$w/err" || { cat "$w/err"; fail "init from bf16-32"; }
"$T" eval "$w/bf16-32-cpu/full-000010.h5" --data "$w/val.h5" --seq-len 32 --json > /dev/null 2> "$w/err" ||
  { cat "$w/err"; fail "eval bf16-32"; }
# bf16 shadows for the MLP only: attention stays float (fp32 AdamW on the run's gradients) and learns.
for s in fp32 bf16; do
  "$T" train "$w/base.ini" "train.out_dir=$w/mlp-$s" quant.layers=mlp quant.shadow=$s 2> "$w/err" ||
    { cat "$w/err"; fail "quant.layers=mlp, shadow $s"; }
done
"$PY" - "$w" <<'PY'
import json, sys
import h5py, numpy as np
w = sys.argv[1]
l = {s: [r["loss"] for r in map(json.loads, open(f"{w}/mlp-{s}/log.jsonl")) if "loss" in r] for s in ("fp32", "bf16")}
assert l["bf16"][-1] < l["bf16"][0] - 0.2 and abs(l["bf16"][-1] - l["fp32"][-1]) < 0.05 * l["fp32"][-1], l
a, b = (h5py.File(f"{w}/mlp-{s}/ckpt-000010.h5", "r")["params/model.layers.0.self_attn.q_proj.weight"][()]
        for s in ("fp32", "bf16"))
assert np.abs(a - b).max() < 0.05 * np.abs(a).max() and np.any(b.view(np.uint32) & 0xFFFF), "attention stays float"
print(f"quant.layers=mlp: bf16 {l['bf16'][0]:.4f} -> {l['bf16'][-1]:.4f}, fp32 -> {l['fp32'][-1]:.4f}")
PY
# A dense run's checkpoint has no STE state: a bf16 run does not resume from it.
sed '/^\[quant\]/,$d' "$w/base.ini" > "$w/dense.ini"
"$T" train "$w/dense.ini" "train.out_dir=$w/dense" train.steps=5 2> "$w/err" || { cat "$w/err"; fail "dense"; }
expect_fail "resume a bf16 run from a dense checkpoint" "$T" train "$w/base.ini" "train.out_dir=$w/bad" \
  quant.shadow=bf16 --resume-from "$w/dense/ckpt-000005.h5"

expect_fail "state_bits = 7" "$T" train "$w/base.ini" "train.out_dir=$w/bad" optim.state_bits=7
expect_fail "shadow = fp16" "$T" train "$w/base.ini" "train.out_dir=$w/bad" quant.shadow=fp16
expect_fail "resume 8-bit state with state_bits = 32" "$T" train "$w/base.ini" "train.out_dir=$w/bad" \
  --resume-from "$w/fp32-8-cpu/ckpt-000005.h5"
expect_fail "resume 32-bit state with state_bits = 8" "$T" train "$w/base.ini" "train.out_dir=$w/bad" \
  optim.state_bits=8 --resume-from "$w/fp32-32-cpu/ckpt-000005.h5"
expect_fail "resume bf16 shadows with shadow = fp32" "$T" train "$w/base.ini" "train.out_dir=$w/bad" \
  optim.state_bits=8 --resume-from "$w/bf16-8-cpu/ckpt-000005.h5"
expect_fail "resume fp32 shadows with shadow = bf16" "$T" train "$w/base.ini" "train.out_dir=$w/bad" \
  quant.shadow=bf16 --resume-from "$w/fp32-32-cpu/ckpt-000005.h5"
[ ! -e "$w/bad" ] || fail "a refused run left $w/bad behind"
echo PASS
