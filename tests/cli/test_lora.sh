#!/usr/bin/env bash
# LoRA on a quantized base ([lora] in `trinity train`) and `trinity merge` (docs/LORA.md):
#   - LoRA runs on an STE (ternary) and a PRIMAL base; the memory line names the method's parts; the PEFT
#     adapter directory appears; a resumed run reproduces the uninterrupted losses exactly (with dropout), and
#     so does a 2-rank data-parallel run the 1-process one (when mpirun is installed);
#   - merge with the scale held fixed: the set of weights whose grid point changed equals what an independent
#     numpy reference computes from the base's indices and scales and the adapter's safetensors; --dense gives
#     W + s (alpha/r) B A bit for bit; strength 0 changes nothing (also on an STE base, whose shadow weights
#     take the update); `trinity eval` of the output equals the merge's own "merged" loss; a merged model is a
#     base for the next LoRA run (half-baking);
#   - a .trin base (exported from the STE base) trains and merges exactly as the checkpoint does; [lora] init
#     continues from a PEFT adapter;
#   - bad input: rank 0, a layer the model lacks, a dense base, an adapter whose shapes do not match the base:
#     one error line, exit 1, no output.
source "$(dirname "$0")/helpers/train_common.sh"
ref="$here/../reference"

cat > "$w/base.ini" <<INI
[model]
dim = 64
n_layers = 2
n_heads = 4
n_kv_heads = 2
ffn_dim = 96
tied_embeddings = false
[data]
train = $w/train.h5
val = $w/val.h5
[train]
batch = 4
seq_len = 32
steps = 4
threads = 2
[optim]
lr = 3e-3
INI
"$T" train "$w/base.ini" "train.out_dir=$w/ste" quant.grid=ternary 2> "$w/ste.err" || { cat "$w/ste.err"; fail "STE base"; }
"$T" train "$w/base.ini" "train.out_dir=$w/pri" optim.method=primal primal.scale_per_row=true 2> "$w/pri.err" \
  || { cat "$w/pri.err"; fail "PRIMAL base"; }

cat > "$w/lora.ini" <<INI
[model]
init = $w/ste/ckpt-000004.h5
[data]
train = $w/train.h5
val = $w/val.h5
[train]
batch = 4
seq_len = 32
steps = 6
ckpt_every = 3
eval_every = 6
eval_batches = 2
threads = 2
[optim]
lr = 1e-2
weight_decay = 0
[lora]
rank = 4
alpha = 8
dropout = 0.1
INI
"$T" train "$w/lora.ini" "train.out_dir=$w/l1" 2> "$w/l1.err" || { cat "$w/l1.err"; fail "LoRA run"; }
grep -q "method lora" "$w/l1.err" || fail "LoRA run: method not named"
"$T" train "$w/lora.ini" "train.out_dir=$w/l1r" --resume-from "$w/l1/ckpt-000003.h5" 2> "$w/l1r.err" \
  || { cat "$w/l1r.err"; fail "LoRA resumed run"; }
[ -f "$w/l1/adapter/adapter_model.safetensors" ] && [ -f "$w/l1/adapter/adapter_config.json" ] || fail "no PEFT adapter"
"$T" train "$w/lora.ini" "train.out_dir=$w/l2" "model.init=$w/pri/ckpt-000004.h5" "lora.layers=q_proj,v_proj,down_proj,-1" \
  lora.dropout=0 train.steps=3 2> "$w/l2.err" || { cat "$w/l2.err"; fail "LoRA on a PRIMAL base"; }
"$PY" - "$w/l1/log.jsonl" "$w/l1r/log.jsonl" "$w/l2/adapter/adapter_config.json" <<'PY'
import json, sys
a_rows = [json.loads(l) for l in open(sys.argv[1])]
b_rows = [json.loads(l) for l in open(sys.argv[2])]
mem = a_rows[0]["memory"]
for k in ("lora_base_bytes", "lora_params", "lora_adapter_bytes", "method_state_bytes"):
    assert k in mem, (k, mem)
assert mem["adam_bytes"] == 0 and mem["lora_base"] == "ste", mem
a = {r["step"]: r for r in a_rows if "loss" in r}
b = {r["step"]: r for r in b_rows if "loss" in r}
assert sorted(b) == [4, 5, 6], sorted(b)
for s in b:
    for k in ("loss", "grad_norm", "lora_b_norm"):
        assert a[s][k] == b[s][k], (s, k, a[s][k], b[s][k])
cfg = json.load(open(sys.argv[3]))
assert cfg["target_modules"] == ["q_proj", "v_proj", "down_proj"] and cfg["layers_to_transform"] == [1], cfg
print(f"LoRA: loss {a[1]['loss']:.4f} -> {a[6]['loss']:.4f}, {mem['lora_params']} adapter values, base "
      f"{mem['lora_base_bytes']} bytes; resume exact")
PY

# Grokfast on the adapters' gradients: the EMA is checkpointed (/grokfast/method/lora), a resume is exact, and
# the run differs from the unfiltered one (the filter reached the adapters)
gf=(optim.grokfast_lambda=2 optim.grokfast_alpha=0.9)
"$T" train "$w/lora.ini" "train.out_dir=$w/gf" "${gf[@]}" 2> "$w/gf.err" || { cat "$w/gf.err"; fail "LoRA + Grokfast"; }
"$T" train "$w/lora.ini" "train.out_dir=$w/gfr" "${gf[@]}" --resume-from "$w/gf/ckpt-000003.h5" 2> "$w/gfr.err" \
  || { cat "$w/gfr.err"; fail "LoRA + Grokfast resumed"; }
"$PY" - "$w/l1/log.jsonl" "$w/gf/log.jsonl" "$w/gfr/log.jsonl" "$w/gf/ckpt-000003.h5" <<'PY'
import json, sys, h5py
plain, gf, gfr = ({r["step"]: r for r in map(json.loads, open(p)) if "loss" in r} for p in sys.argv[1:4])
for s in (4, 5, 6):
    for k in ("loss", "grad_norm", "lora_b_norm"):
        assert gf[s][k] == gfr[s][k], (s, k, gf[s][k], gfr[s][k])
assert gf[1]["loss"] == plain[1]["loss"] and gf[2]["lora_b_norm"] != plain[2]["lora_b_norm"], (gf[2], plain[2])
mem = json.loads(open(sys.argv[2]).readline())["memory"]
with h5py.File(sys.argv[4], "r") as f:
    assert f["grokfast/method/lora"].shape == (mem["lora_params"],) and "ema" not in f["grokfast"], list(f["grokfast"])
assert mem["grokfast_bytes"] >= 4 * mem["lora_params"], mem
print(f"LoRA + Grokfast: {mem['lora_params']} adapter gradients filtered, resume exact")
PY

# data parallel (when mpirun is there): 2 ranks with dropout log the 1-process losses exactly
if command -v mpirun > /dev/null; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
  export OMPI_MCA_rmaps_base_oversubscribe=1
  [ -n "${ASAN_OPTIONS:-}" ] && export ASAN_OPTIONS="$ASAN_OPTIONS:fast_unwind_on_malloc=0"
  dp=(train.accum=2 train.steps=3 train.threads=1 train.eval_every=0 train.ckpt_every=0)
  "$T" train "$w/lora.ini" "train.out_dir=$w/dp1" "${dp[@]}" 2> "$w/dp1.err" || { cat "$w/dp1.err"; fail "LoRA 1 rank"; }
  mpirun -np 2 "$T" train "$w/lora.ini" "train.out_dir=$w/dp2" "${dp[@]}" 2> "$w/dp2.err" \
    || { cat "$w/dp2.err"; fail "LoRA on 2 ranks"; }
  "$PY" - "$w/dp1/log.jsonl" "$w/dp2/log.jsonl" <<'PY'
import json, sys
a, b = ([(r["loss"], r["grad_norm"], r["lora_b_norm"]) for r in map(json.loads, open(p)) if "loss" in r] for p in sys.argv[1:3])
assert a == b and len(a) == 3, (a, b)
print("LoRA on 2 ranks: the 1-process losses exactly")
PY
fi

# [lora] init: training continues from a PEFT adapter (its B is not zero at step 1)
grep -v '^rank\|^alpha' "$w/lora.ini" > "$w/lora-init.ini"
"$T" train "$w/lora-init.ini" "train.out_dir=$w/li" "lora.init=$w/l1/adapter" train.steps=1 train.ckpt_every=0 \
  train.eval_every=0 2> "$w/li.err" || { cat "$w/li.err"; fail "[lora] init"; }
"$PY" - "$w/l1/log.jsonl" "$w/li/log.jsonl" <<'PY'
import json, sys
a, b = ([json.loads(l) for l in open(p) if '"lora_b_norm"' in l] for p in sys.argv[1:3])
assert b[0]["lora_b_norm"] > 0.5 * a[-1]["lora_b_norm"] > 0, (a[-1], b[0])
PY

# merge on the PRIMAL base, scale fixed (a PRIMAL base has no rule), against numpy; strength 8 so that a few
# hundred weights move after 3 steps of training
"$T" merge "$w/pri/ckpt-000004.h5" "$w/l2/adapter" -o "$w/m.h5" --strength 8 --data "$w/val.h5" --seq-len 32 --max-windows 24 --json > "$w/m.json" \
  || fail "merge"
"$T" merge "$w/pri/ckpt-000004.h5" "$w/l2/adapter" -o "$w/md.h5" --strength 8 --dense --json > "$w/md.json" || fail "merge --dense"
"$T" merge "$w/pri/ckpt-000004.h5" "$w/l2/adapter" -o "$w/m0.h5" --strength 0 --json > "$w/m0.json" || fail "merge -s 0"
ev=$("$T" eval "$w/m.h5" --data "$w/val.h5" --seq-len 32 --max-windows 24 --json)
"$PY" - "$ref" "$w/pri/ckpt-000004.h5" "$w/l2/adapter" "$w/m.h5" "$w/md.h5" "$w/m.json" "$w/m0.json" "$ev" <<'PY'
import json, struct, sys
import numpy as np, h5py
sys.path.insert(0, sys.argv[1])
from llama_ref import snap_indices
base, adir, out, dense = sys.argv[2:6]
rep, rep0, ev = json.loads(open(sys.argv[6]).read()), json.loads(open(sys.argv[7]).read()), json.loads(sys.argv[8])
cfg = json.load(open(adir + "/adapter_config.json"))
raw = open(adir + "/adapter_model.safetensors", "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
hdr = json.loads(raw[8:8 + n])
def tensor(name):
    e = hdr[name]; b, t = e["data_offsets"]
    return np.frombuffer(raw[8 + n + b:8 + n + t], dtype="<f4").reshape(e["shape"])
coef = 8.0 * cfg["lora_alpha"] / cfg["r"]  # --strength 8
changed = weights = 0
with h5py.File(base) as fb, h5py.File(out) as fo, h5py.File(dense) as fd:
    for key in sorted(hdr):
        if not key.endswith("lora_A.weight"):
            continue
        name = key[len("base_model.model."):].replace(".lora_A.weight", ".weight")
        A, B = tensor(key), tensor(key.replace("lora_A", "lora_B"))
        g = fb["primal/" + name]
        idx, scale, grid = g["idx"][()], g["scale"][()], g["grid"][()]
        sc = scale[:, None] if scale.shape[0] > 1 else scale[0]
        W = (sc * grid[idx]).astype(np.float32)
        Wm = (W.astype(np.float64) + coef * (B.astype(np.float64) @ A.astype(np.float64))).astype(np.float32)
        assert np.array_equal(fd["params/" + name][()], Wm), name          # dense merge: exact
        new = snap_indices((Wm / sc).astype(np.float32), grid)
        got = fo["primal/" + name + "/idx"][()]
        assert np.array_equal(got, new), (name, int((got != new).sum()))  # the same changed set
        assert np.array_equal(fo["primal/" + name + "/scale"][()], scale)
        changed += int((new != idx).sum()); weights += idx.size
assert (rep["changed"], rep["weights"]) == (changed, weights), (rep, changed, weights)
assert rep0["changed"] == 0, rep0
assert changed > 0
assert abs(ev["loss"] - rep["loss_merged"]) <= 1e-6 * ev["loss"], (ev, rep)
print(f"merge: {changed} of {weights} weights changed grid point, equal to numpy's set; dense merge exact; "
      f"loss base {rep['loss_base']:.5f}, +adapter {rep['loss_adapter']:.5f}, merged {rep['loss_merged']:.5f} "
      f"(eval {ev['loss']:.5f})")
PY

# STE base: the shadows take the update and are re-snapped by the run's rule (strength 0: nothing moves, the
# loss is the base's); half-bake twice, the merged STE checkpoint serving as the next base
"$T" merge "$w/ste/ckpt-000004.h5" "$w/l1/adapter" -o "$w/s0.h5" --strength 0 --data "$w/val.h5" --seq-len 32 \
  --max-windows 24 --json > "$w/s0.json" || fail "STE merge at strength 0"
"$PY" -c 'import json,sys; r=json.load(open(sys.argv[1])); assert r["shadows"] and r["changed"] == 0 and r["loss_merged"] == r["loss_base"], r' "$w/s0.json" \
  || fail "STE merge at strength 0 moved the model"
"$T" merge "$w/ste/ckpt-000004.h5" "$w/l1/adapter" -o "$w/h1.h5" --strength 0.5 --data "$w/val.h5" --seq-len 32 \
  --max-windows 24 --json > "$w/h1.json" || fail "half-bake 1"
ev=$("$T" eval "$w/h1.h5" --data "$w/val.h5" --seq-len 32 --max-windows 24 --json)
"$PY" -c 'import json,sys; r=json.load(open(sys.argv[1])); e=json.loads(sys.argv[2]); assert r["shadows"] and r["changed"] > 0 and abs(e["loss"] - r["loss_merged"]) <= 1e-6 * e["loss"], (r, e); print("half-bake 1:", r)' "$w/h1.json" "$ev" \
  || fail "STE merge: the output is not the model the merge evaluated"
"$T" train "$w/lora.ini" "train.out_dir=$w/l3" "model.init=$w/h1.h5" train.steps=2 train.ckpt_every=0 \
  2> "$w/l3.err" || { cat "$w/l3.err"; fail "LoRA on a merged base"; }
"$T" merge "$w/h1.h5" "$w/l3/adapter" -o "$w/h2.trin" --strength 0.5 > "$w/h2.txt" || fail "half-bake 2 (.trin)"
[ -s "$w/h2.trin" ] || fail "no .trin"
ls "$w" | grep -q "merge-" && fail "temporary file left behind"
cat "$w/h2.txt"

# a .trin base is the same base as the STE checkpoint it was exported from: same training losses, same merge
"$T" export "$w/ste/ckpt-000004.h5" -o "$w/ste.trin" > /dev/null 2>&1 || fail "export"
"$T" train "$w/lora.ini" "train.out_dir=$w/lt" "model.init=$w/ste.trin" train.steps=2 train.ckpt_every=0 2> "$w/lt.err" \
  || { cat "$w/lt.err"; fail "LoRA on a .trin base"; }
"$T" merge "$w/ste.trin" "$w/l1/adapter" -o "$w/mt.h5" --keep-scale --json > "$w/mt.json" || fail "merge on a .trin"
"$T" merge "$w/ste/ckpt-000004.h5" "$w/l1/adapter" -o "$w/ms.h5" --keep-scale --json > "$w/ms.json" || fail "merge"
"$PY" - "$w/l1/log.jsonl" "$w/lt/log.jsonl" "$w/mt.json" "$w/ms.json" <<'PY'
import json, sys
a, b = ([json.loads(l) for l in open(p) if '"loss"' in l] for p in sys.argv[1:3])
assert (a[0]["loss"], a[0]["grad_norm"]) == (b[0]["loss"], b[0]["grad_norm"]), (a[0], b[0])  # step 1 (lr differs)
mt, ms = (json.loads(open(p).read()) for p in sys.argv[3:5])
assert (mt["changed"], mt["weights"]) == (ms["changed"], ms["weights"]) and mt["changed"] > 0, (mt, ms)
print(f".trin base: losses equal to the checkpoint's; merge changes the same {mt['changed']} weights")
PY

# bad input
expect_fail "rank 0" "$T" train "$w/lora.ini" "train.out_dir=$w/bad1" lora.rank=0
expect_fail "no such layer" "$T" train "$w/lora.ini" "train.out_dir=$w/bad2" "lora.layers=attn,7"
expect_fail "dense base" "$T" train "$w/lora.ini" "train.out_dir=$w/bad3" "model.init=$w/md.h5"
[ ! -e "$w/bad1" ] && [ ! -e "$w/bad2" ] && [ ! -e "$w/bad3" ] || fail "a failed run wrote output"
mkdir "$w/badad"
cp "$w/l2/adapter/adapter_config.json" "$w/badad/"
"$PY" - "$ref" "$w/l2/adapter" "$w/badad" <<'PY'
import json, struct, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from llama_ref import write_safetensors
raw = open(sys.argv[2] + "/adapter_model.safetensors", "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
hdr = json.loads(raw[8:8 + n])
ts = []
for k, e in hdr.items():
    if k == "__metadata__":
        continue
    shape = list(e["shape"])
    if "lora_A" in k and ".1." in k:
        shape[1] += 1  # one column too many: not this base's shape
    ts.append((k, np.zeros(shape, dtype=np.float32)))
write_safetensors(sys.argv[3] + "/adapter_model.safetensors", ts, "F32")
PY
expect_fail "adapter shapes" "$T" merge "$w/pri/ckpt-000004.h5" "$w/badad" -o "$w/bad.h5"
[ ! -e "$w/bad.h5" ] || fail "a failed merge wrote its output"
echo "PASS"
