#!/usr/bin/env bash
# Training on `device = cuda` against `device = cpu`, end to end through the `trinity` binary: in a
# TN_CUDA_EMU build every CUDA kernel runs on the CPU emulator; on a GPU machine the same test runs on the
# card. A tiny model (dim 64, 2 layers, 4 heads with 2 KV heads, seq 32) is trained 10 steps with dense
# AdamW, STE (ternary, per-row absmean, act_bits 8), PRIMAL, PRIMAL on a Qwen2-style model (q/k/v biases, Llama
# 3's RoPE scaling) and dense AdamW on a Qwen3-style one (per-head q/k norms, head_dim 32) on both devices: every
# logged loss agrees
# within 1e-5 relative (1e-4 on a real GPU, where nvcc contracts multiply-adds and cuBLAS sums in another
# order) and the PRIMAL runs end with identical grid indices (STE: see the note below). A run resumed from a checkpoint on the
# other device reproduces the uninterrupted losses to the same bound, both ways. `trinity eval --device
# cuda` agrees with the CPU's. Faults give one error line and exit 1, and leave no checkpoint: a run
# larger than the device (TN_CUDA_EMU_MEM), a CUDA error inside a step (TN_CUDA_EMU_FAULT), a device
# index that does not exist, tf32/bf16 on a card without tensor cores. PRIMAL with comm = nccl (one rank; the
# reductions run) equals the plain CUDA run exactly. LoRA on a frozen STE and PRIMAL base: losses within the
# bound, the device's copy of the base unchanged, PEFT adapters written, a CUDA resume exact (section below).
# In a build without a CUDA backend,
# or on a machine without a GPU, the refusal is checked and the rest skipped.
source "$(dirname "$0")/helpers/train_common.sh"

cat > "$w/base.ini" <<INI
[model]
dim = 64
n_layers = 2
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
steps = 10
eval_every = 5
eval_batches = 2
ckpt_every = 5
threads = 2
[optim]
lr = 3e-3
INI

# ---- is there a CUDA device? ------------------------------------------------------------------------------
set +e
"$T" train "$w/base.ini" "train.out_dir=$w/probe" train.steps=1 train.device=cuda > /dev/null 2> "$w/probe.err"
rc=$?
set -e
if [ $rc -ne 0 ]; then
  [ $rc -eq 1 ] && [ "$(wc -l < "$w/probe.err")" -eq 1 ] && grep -q "^trinity: error: \[train\] device" "$w/probe.err" \
    || { cat "$w/probe.err"; fail "device = cuda without a device: expected one error line and exit 1"; }
  [ ! -e "$w/probe/ckpt-000001.h5" ] || fail "a refused run wrote a checkpoint"
  echo "ok: refused: $(cat "$w/probe.err")"
  echo "SKIPPED: no CUDA device or backend (the refusal above is correct)"
  exit 77
fi
emulated=0
grep -q "CUDA emulator" "$w/probe.err" && emulated=1
tol=1e-5; [ $emulated -eq 1 ] || tol=1e-4
echo "device cuda: $(grep -m1 'device cuda' "$w/probe.err" | sed 's/^trinity: //') (tolerance $tol)"

# ---- the methods on both devices -----------------------------------------------------------------------------
# STE snaps every weight to its grid at each step, and with int8 activations (BitNet) every linear input to
# its int8 grid too: a difference in the last bit of a weight or an activation near a rounding boundary
# flips its grid point and moves the loss by ~1e-6 at once, after which the runs follow different paths.
# The CUDA attention (tiled, online softmax) rounds differently from the CPU's, so over 10 steps the STE
# losses differ by 0 to 1.2e-4 relative (measured over 8 seeds and the Release and ASan builds). So in the
# emulator the STE runs use the CPU attention swapped into the CUDA table (TN_CUDA_EMU_CPU_ATTENTION): every
# other op of the step must then equal the CPU's bit for bit, and the losses be equal. "ste-flash" is the
# same run with the CUDA attention, checked against a sanity bound. Dense and PRIMAL (whose indices move
# only by votes and seeded draws) use the CUDA attention and the bound. On a GPU nothing is swapped.
ste="quant.grid=ternary quant.scale=absmean quant.scale_per_row=true quant.layers=attn,mlp quant.act_bits=8"
declare -A method=(
  [dense]=""
  [ste]="$ste"
  [ste-flash]="$ste"
  [primal]="optim.method=primal primal.init_std=0.05 primal.c=0.01"
  [qwen2-primal]="optim.method=primal primal.init_std=0.05 primal.c=0.01 model.qkv_bias=true model.rope_scaling=llama3 model.rope_factor=8 model.rope_original_max_position_embeddings=8"
  [qwen3-dense]="model.qk_norm=true model.head_dim=32"
)
for m in dense ste ste-flash primal qwen2-primal qwen3-dense; do
  swap=0; [ $m = ste ] && swap=1
  bound=$tol; [ $m = ste-flash ] && bound=1e-3; [ $m = ste ] && [ $emulated -eq 0 ] && bound=1e-3
  for d in cpu cuda; do
    # shellcheck disable=SC2086
    TN_CUDA_EMU_CPU_ATTENTION=$swap "$T" train "$w/base.ini" "train.out_dir=$w/$m-$d" "train.device=$d" ${method[$m]} \
      2> "$w/$m-$d.err" || { cat "$w/$m-$d.err"; fail "$m on $d"; }
  done
  "$PY" - "$w/$m-cpu" "$w/$m-cuda" "$bound" "$m" <<'PY'
import json, sys, h5py, numpy as np
a_dir, b_dir, tol, m = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
def losses(d):
    rows = [json.loads(l) for l in open(d + "/log.jsonl")]
    return {r["step"]: r for r in rows if "loss" in r}, [r for r in rows if "val_loss" in r]
a, av = losses(a_dir)
b, bv = losses(b_dir)
assert sorted(a) == sorted(b) == list(range(1, 11)), (sorted(a), sorted(b))
worst = max(abs(a[s]["loss"] - b[s]["loss"]) / abs(a[s]["loss"]) for s in a)
assert worst <= tol, f"{m}: loss differs by {worst:.3g} relative (bound {tol})"
for x, y in zip(av, bv):
    assert abs(x["val_loss"] - y["val_loss"]) <= tol * abs(x["val_loss"]), (x, y)
msg = f"{m}: 10 losses agree within {worst:.2g} relative"
if m.endswith("primal"):
    fa, fb = h5py.File(a_dir + "/ckpt-000010.h5"), h5py.File(b_dir + "/ckpt-000010.h5")
    names = []
    fa["primal"].visit(lambda n: names.append(n) if n.endswith("/idx") else None)
    assert names, "no ghost tensors in the checkpoint"
    diff = sum(int((fa["primal"][n][()] != fb["primal"][n][()]).sum()) for n in names)
    assert diff == 0, f"primal: {diff} grid indices differ after 10 steps"
    msg += f"; grid indices identical in {len(names)} ghost tensors"
print(msg)
PY
done

# ---- comm = nccl with one rank: the data-parallel step's reductions run (the emulator's one-rank NCCL, or NCCL
# on a GPU) and, over one rank, change nothing: the losses equal the plain CUDA run's exactly ------------------
# shellcheck disable=SC2086
"$T" train "$w/base.ini" "train.out_dir=$w/primal-nccl" train.device=cuda train.comm=nccl ${method[primal]} \
  2> "$w/nccl.err" || { cat "$w/nccl.err"; fail "primal with comm = nccl"; }
grep -q "data parallel: 1 rank(s) over nccl" "$w/nccl.err" || { cat "$w/nccl.err"; fail "comm = nccl: no data-parallel line"; }
"$PY" - "$w/primal-cuda" "$w/primal-nccl" <<'PY'
import json, sys
rows = [[r for r in map(json.loads, open(d + "/log.jsonl")) if "loss" in r] for d in sys.argv[1:3]]
assert [r["loss"] for r in rows[0]] == [r["loss"] for r in rows[1]], "comm = nccl (one rank) changed the losses"
assert all("comm_s" in r for r in rows[1])
print(f"comm = nccl, one rank: {len(rows[1])} losses equal to the plain CUDA run's")
PY

# ---- resume across devices: cpu -> cuda and cuda -> cpu ----------------------------------------------------------
for pair in "cpu cuda" "cuda cpu"; do
  set -- $pair
  for m in dense primal; do
    # shellcheck disable=SC2086
    "$T" train "$w/base.ini" "train.out_dir=$w/$m-$1-to-$2" "train.device=$2" ${method[$m]} \
      --resume-from "$w/$m-$1/ckpt-000005.h5" 2> "$w/res.err" || { cat "$w/res.err"; fail "$m resumed $1 -> $2"; }
    "$PY" - "$w/$m-$1/log.jsonl" "$w/$m-$1-to-$2/log.jsonl" "$tol" "$m $1 -> $2" <<'PY'
import json, sys
a = {r["step"]: r["loss"] for r in map(json.loads, open(sys.argv[1])) if "loss" in r}
b = {r["step"]: r["loss"] for r in map(json.loads, open(sys.argv[2])) if "loss" in r}
tol = float(sys.argv[3])
assert sorted(b) == list(range(6, 11)), sorted(b)
worst = max(abs(a[s] - b[s]) / abs(a[s]) for s in b)
assert worst <= tol, f"{sys.argv[4]}: resumed losses differ by {worst:.3g} relative"
print(f"resume {sys.argv[4]}: steps 6..10 agree within {worst:.2g}")
PY
  done
done

# ---- LoRA (docs/LORA.md) on a frozen STE base (ternary, dropout 0.1) and a PRIMAL base (a layer subset, no
# dropout), 6 steps on both devices: every loss, gradient norm and |B| within the bound; the base's indices and
# scales on the device unchanged (each checkpoint downloads them and checks their CRC32 against the base's, and
# the base file is untouched); the PEFT adapters written, their values within 100 times the bound of the CPU's
# (max |d| / max |cpu| per tensor: AdamW's m / sqrt(v) magnifies last-bit differences of small gradients; measured
# in the emulator: 7e-5 on the STE base, 2.5e-6 on the PRIMAL one; losses etc. within 2.3e-7); a CUDA run
# resumed at step 3 reproduces steps 4..6 exactly (dropout masks included); comm = nccl (one rank: the adapters'
# gradients go through the device all-reduce) equals the plain CUDA run exactly ------------------------------------
"$T" train "$w/base.ini" "train.out_dir=$w/lora-base-ste" train.steps=4 train.eval_every=0 train.ckpt_every=0 \
  quant.grid=ternary quant.scale=absmean quant.scale_per_row=true 2> "$w/lb.err" || { cat "$w/lb.err"; fail "LoRA's STE base"; }
sum_before=$(cat "$w/lora-base-ste/ckpt-000004.h5" "$w/primal-cpu/ckpt-000010.h5" | md5sum)
cat > "$w/lora.ini" <<INI
[data]
train = $w/train.h5
val = $w/val.h5
[train]
batch = 2
seq_len = 32
steps = 6
eval_every = 3
eval_batches = 2
ckpt_every = 3
threads = 2
[optim]
lr = 1e-2
weight_decay = 0
[lora]
rank = 4
alpha = 8
INI
declare -A lora_base=(
  [ste]="model.init=$w/lora-base-ste/ckpt-000004.h5 lora.dropout=0.1"
  [primal]="model.init=$w/primal-cpu/ckpt-000010.h5 lora.layers=q_proj,v_proj,down_proj,-1"
)
for b in ste primal; do
  for d in cpu cuda; do
    # shellcheck disable=SC2086
    "$T" train "$w/lora.ini" "train.out_dir=$w/lora-$b-$d" "train.device=$d" ${lora_base[$b]} \
      2> "$w/lora-$b-$d.err" || { cat "$w/lora-$b-$d.err"; fail "LoRA on a $b base on $d"; }
  done
  "$PY" - "$w/lora-$b-cpu" "$w/lora-$b-cuda" "$tol" "$b" <<'PY'
import json, struct, sys
import numpy as np
a_dir, b_dir, tol, base = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
def rows(d):
    r = [json.loads(l) for l in open(d + "/log.jsonl")]
    return {x["step"]: x for x in r if "loss" in x}, [x for x in r if "val_loss" in x], r[0]["memory"]
a, av, am = rows(a_dir)
b, bv, bm = rows(b_dir)
assert sorted(a) == sorted(b) == list(range(1, 7)), (sorted(a), sorted(b))
assert bm["device"].startswith("cuda") and bm["method_state_bytes"] > 0 and bm["adam_bytes"] == 0, bm
worst = 0.0
for s in a:
    for k in ("loss", "grad_norm", "lora_b_norm"):
        worst = max(worst, abs(a[s][k] - b[s][k]) / abs(a[s][k]))
for x, y in zip(av, bv):
    worst = max(worst, abs(x["val_loss"] - y["val_loss"]) / x["val_loss"])
assert len(av) == len(bv) == 2 and worst <= tol, f"LoRA {base}: cuda differs from cpu by {worst:.3g} relative (bound {tol})"
def adapter(d):
    raw = open(d + "/adapter/adapter_model.safetensors", "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    hdr = json.loads(raw[8:8 + n])
    return {k: np.frombuffer(raw[8 + n + e["data_offsets"][0]:8 + n + e["data_offsets"][1]], dtype="<f4")
            for k, e in hdr.items() if k != "__metadata__"}
pa, pb = adapter(a_dir), adapter(b_dir)
assert sorted(pa) == sorted(pb) and pa, (sorted(pa), sorted(pb))
dp = max(float(np.abs(pa[k] - pb[k]).max() / np.abs(pa[k]).max()) for k in pa)
assert dp <= 100 * tol, f"LoRA {base}: adapters differ by {dp:.3g} (bound {100 * tol:g})"
cfg = [json.load(open(d + "/adapter/adapter_config.json")) for d in (a_dir, b_dir)]
assert cfg[0] == cfg[1], cfg
print(f"LoRA on a {base} base, cuda vs cpu: 6 losses, gradient norms, |B| and 2 val losses within {worst:.2g} "
      f"relative; {len(pa)} PEFT tensors within {dp:.2g}")
PY
done
[ "$(cat "$w/lora-base-ste/ckpt-000004.h5" "$w/primal-cpu/ckpt-000010.h5" | md5sum)" = "$sum_before" ] \
  || fail "LoRA training changed a base file"
# shellcheck disable=SC2086
"$T" train "$w/lora.ini" "train.out_dir=$w/lora-ste-cuda-res" train.device=cuda ${lora_base[ste]} \
  --resume-from "$w/lora-ste-cuda/ckpt-000003.h5" 2> "$w/lr.err" || { cat "$w/lr.err"; fail "LoRA resumed on cuda"; }
# shellcheck disable=SC2086
"$T" train "$w/lora.ini" "train.out_dir=$w/lora-ste-nccl" train.device=cuda train.comm=nccl ${lora_base[ste]} \
  2> "$w/ln.err" || { cat "$w/ln.err"; fail "LoRA with comm = nccl"; }
"$PY" - "$w/lora-ste-cuda" "$w/lora-ste-cuda-res" "$w/lora-ste-nccl" <<'PY'
import json, sys
def rows(d): return {r["step"]: (r["loss"], r["grad_norm"], r["lora_b_norm"]) for r in map(json.loads, open(d + "/log.jsonl")) if "loss" in r}
a, r, n = (rows(d) for d in sys.argv[1:4])
assert sorted(r) == [4, 5, 6] and all(r[s] == a[s] for s in r), (a, r)
assert n == a, (a, n)
print("LoRA on cuda: resumed at step 3, steps 4..6 exact; comm = nccl (one rank) exact")
PY
[ -f "$w/lora-ste-cuda/adapter/adapter_config.json" ] && [ -f "$w/lora-primal-cuda/adapter/adapter_model.safetensors" ] \
  || fail "LoRA on cuda: no PEFT adapter directory"

# ---- eval on the device ---------------------------------------------------------------------------------------------
for m in dense ste primal; do
  e1=$("$T" eval "$w/$m-cpu/ckpt-000010.h5" --data "$w/val.h5" --seq-len 32 --batch 2 --max-windows 8 --json)
  e2=$("$T" eval "$w/$m-cpu/ckpt-000010.h5" --data "$w/val.h5" --seq-len 32 --batch 2 --max-windows 8 --json \
       --device cuda 2> /dev/null)
  "$PY" -c "import json,sys; a,b=json.loads(sys.argv[1]),json.loads(sys.argv[2]); t=float(sys.argv[3]);
assert a['tokens']==b['tokens'] and abs(a['loss']-b['loss'])<=t*a['loss'], (a,b); print('eval $m: cpu', a['loss'], 'cuda', b['loss'])" \
    "$e1" "$e2" "$tol"
done

# ---- bench train on the device ------------------------------------------------------------------------------------
j=$("$T" bench train --preset tiny --device cuda --batch 2 --seq-len 32 --steps 1 --json 2> /dev/null)
"$PY" -c "import json,sys; j=json.loads(sys.argv[1]); assert j['device']=='cuda:0' and j['tokens_per_s']>0, j; print('bench train on', j['device_name'])" "$j"

# ---- the memory plan (--plan): configs/ghost-0.1b.ini at batch 16 x 512 fits 10.0 GiB on a CUDA device ------------
if [ $emulated -eq 1 ]; then
  TN_CUDA_EMU_MEM=10G "$T" train "$TN_SOURCE_DIR/configs/ghost-0.1b.ini" --plan --device cuda > "$w/plan.json" 2> "$w/plan.err" \
    || { cat "$w/plan.err"; fail "ghost-0.1b --plan"; }
  "$PY" - "$w/plan.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))["memory"]
G = 2 ** 30
assert m["fits"] and m["planned_bytes"] <= 10 * G, m
assert m["ghost_bytes_per_weight"] == 2, m
print(f"ghost-0.1b plan on cuda at 16 x 512: {m['planned_bytes'] / G:.2f} GiB "
      f"(activations {m['activation_bytes'] / G:.2f}, ghost state {m['method_state_bytes'] / G:.2f})")
PY
  set +e
  TN_CUDA_EMU_MEM=24M "$T" train "$w/base.ini" "train.out_dir=$w/plan" --plan --device cuda train.batch=64 > "$w/plan.json" 2> "$w/err"
  rc=$?
  set -e
  [ $rc -eq 1 ] && grep -q '"fits":false' "$w/plan.json" && [ "$(wc -l < "$w/err")" -eq 1 ] \
    || { cat "$w/plan.json" "$w/err"; fail "--plan of a run larger than the device: exit 1, fits false, one error line"; }
  echo "ok: --plan refuses: $(cat "$w/err")"
fi

# ---- faults -----------------------------------------------------------------------------------------------------------
expect_fail "no such device index" "$T" train "$w/base.ini" "train.out_dir=$w/f1" train.device=cuda:7
expect_fail "unknown device" "$T" train "$w/base.ini" "train.out_dir=$w/f2" train.device=gpu
expect_fail "unknown precision" "$T" train "$w/base.ini" "train.out_dir=$w/f3" train.device=cuda train.precision=fp8
if [ $emulated -eq 1 ]; then
  # The emulator reports sm_61 (the GTX 1080 Ti): no tensor cores.
  expect_fail "bf16 on sm_61" "$T" train "$w/base.ini" "train.out_dir=$w/f4" train.device=cuda train.precision=bf16
  # A device of 24 MiB (cuBLAS's 4 MiB workspace and the 16 MiB op scratch fit) and batch 64: the plan does not fit and is refused
  # before anything else is allocated.
  TN_CUDA_EMU_MEM=24M expect_fail "run larger than the device" "$T" train "$w/base.ini" "train.out_dir=$w/f5" \
    train.device=cuda train.batch=64
  grep -q "needs [0-9]* bytes" "$w/err" || fail "the refusal names the bytes asked for"
  [ ! -e "$w/f5" ] || [ -z "$(ls "$w/f5")" ] || fail "a refused run left files"
  # A kernel fault in the middle of step 7: one error line, exit 1, and the checkpoint of step 5 is the
  # newest (nothing half-written: no ckpt-000010.h5, no temporary files).
  # Launches per step, from two short runs (TN_CUDA_EMU_STATS prints the count at exit); fault in step 7.
  launches() { TN_CUDA_EMU_STATS=1 "$T" train "$w/base.ini" "train.out_dir=$w/cnt" train.device=cuda train.steps=$1 \
    train.eval_every=0 train.ckpt_every=0 2>&1 >/dev/null | sed -n 's/^cuda-emu: \([0-9]*\) kernel launches.*/\1/p'; }
  l1=$(launches 1); l2=$(launches 2)
  [ -n "$l1" ] && [ -n "$l2" ] && [ "$l2" -gt "$l1" ] || fail "could not count kernel launches ($l1, $l2)"
  at=$((l1 + (l2 - l1) * 6 + (l2 - l1) / 2))
  set +e
  TN_CUDA_EMU_FAULT=$at "$T" train "$w/base.ini" "train.out_dir=$w/f6" train.device=cuda > /dev/null 2> "$w/err"
  rc=$?
  set -e
  # the progress lines of the steps before come first; then one error line, the last
  [ $rc -eq 1 ] || { cat "$w/err"; fail "CUDA error inside a step: exit $rc, expected 1"; }
  [ "$(grep -c '^trinity: error: ' "$w/err")" -eq 1 ] && tail -1 "$w/err" | grep -q "^trinity: error: step [6-9]: .*illegal memory" \
    || { cat "$w/err"; fail "CUDA error inside a step: expected one error line naming the step and the CUDA error"; }
  echo "ok: CUDA error inside a step: $(tail -1 "$w/err")"
  ls "$w/f6" | grep -qv -e '^ckpt-00000[0-9].h5$' -e '^latest.h5$' -e '^config.ini$' -e '^log.jsonl$' \
    && { ls -la "$w/f6"; fail "files other than complete checkpoints after the fault"; }
  [ ! -e "$w/f6/ckpt-000010.h5" ] || fail "the final checkpoint was written after a fault"
  # tf32 and bf16 where the (emulated) card has tensor cores: the run trains, close to fp32 on the same card.
  for p in fp32 tf32 bf16; do
    TN_CUDA_EMU_CC=80 "$T" train "$w/base.ini" "train.out_dir=$w/p-$p" train.device=cuda train.precision=$p \
      train.steps=3 train.eval_every=0 train.ckpt_every=0 2> "$w/p.err" || { cat "$w/p.err"; fail "precision $p"; }
  done
  for p in tf32 bf16; do
    "$PY" - "$w/p-fp32/log.jsonl" "$w/p-$p/log.jsonl" "$p" <<'PY'
import json, sys
a = {r["step"]: r["loss"] for r in map(json.loads, open(sys.argv[1])) if "loss" in r}
b = {r["step"]: r["loss"] for r in map(json.loads, open(sys.argv[2])) if "loss" in r}
d = max(abs(a[s] - b[s]) / a[s] for s in b)
# rounded GEMM inputs must show (the option is applied), a little (it trains the same model)
lo, hi = (1e-7, 1e-3) if sys.argv[3] == "tf32" else (1e-6, 1e-2)
assert lo < d < hi, f"{sys.argv[3]}: relative loss difference {d} to fp32, expected in ({lo}, {hi})"
print(f"precision {sys.argv[3]}: losses within {d:.2g} of fp32")
PY
  done
fi
echo "PASS"
