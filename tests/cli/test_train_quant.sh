#!/usr/bin/env bash
# STE evolution ([quant]) and PRIMAL ([optim] method = primal) in `trinity train`:
# telemetry keys in log.jsonl, a resumed run reproduces the uninterrupted losses and telemetry exactly,
# `trinity eval` of the final checkpoint (snapped / materialised weights) equals the run's own last
# validation, PRIMAL's memory report says <= 2 bytes per ghost weight, and config errors are clean.
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
batch = 4
seq_len = 32
accum = 2
steps = 10
eval_every = 5
eval_batches = 4
ckpt_every = 5
threads = 2
[optim]
lr = 3e-3
INI

check_run() {  # check_run NAME KEYS... -- OVERRIDES...
  local name=$1; shift
  local keys=()
  while [ "$1" != "--" ]; do keys+=("$1"); shift; done; shift
  "$T" train "$w/base.ini" "train.out_dir=$w/$name" "$@" 2> "$w/$name.err" || { cat "$w/$name.err"; fail "$name run"; }
  "$T" train "$w/base.ini" "train.out_dir=$w/$name-r" "$@" --resume-from "$w/$name/ckpt-000005.h5" 2> "$w/$name-r.err" \
    || { cat "$w/$name-r.err"; fail "$name resumed run"; }
  ev=$("$T" eval "$w/$name/ckpt-000010.h5" --data "$w/val.h5" --seq-len 32 --batch 4 --max-windows 16 --json)
  "$PY" - "$w/$name/log.jsonl" "$w/$name-r/log.jsonl" "$ev" "${keys[@]}" <<'PY'
import json, sys
a_rows = [json.loads(l) for l in open(sys.argv[1])]
b_rows = [json.loads(l) for l in open(sys.argv[2])]
ev, keys = json.loads(sys.argv[3]), sys.argv[4:]
a = {r["step"]: r for r in a_rows if "loss" in r}
b = {r["step"]: r for r in b_rows if "loss" in r}
for k in keys:
    assert all(k in a[s] for s in range(2, 11)), (k, a[2])
assert sorted(b) == list(range(6, 11))
for s in b:
    for k in ["loss", "grad_norm"] + keys:
        assert a[s].get(k) == b[s].get(k), (s, k, a[s].get(k), b[s].get(k))
val = [r for r in a_rows if "val_loss" in r][-1]
assert abs(ev["loss"] - val["val_loss"]) <= 1e-6 * val["val_loss"], (ev, val)
first, last = a[1]["loss"], a[10]["loss"]
assert last < first, (first, last)
print(f"loss {first:.4f} -> {last:.4f}, eval {ev['loss']:.6f} == val {val['val_loss']:.6f}, resume exact")
PY
}

check_run ste lambda grid_changed hist_attn hist_mlp hist_head -- quant.grid=ternary quant.lambda_warmup_steps=4 quant.act_bits=8 quant.layers=attn,mlp,head
check_run ste_prime lambda grid_changed hist_attn hist_mlp -- quant.grid=primal15 quant.scale=std quant.scale_per_row=true
check_run primal flip_rate vote_rate scale_attn scale_mlp -- optim.method=primal
check_run primal_fine flip_rate vote_rate scale_head -- optim.method=primal primal.ghost_layers=attn,mlp,head primal.fine_layers=head,0 primal.scale_per_row=true primal.packed_indices=false

"$PY" - "$w/primal/log.jsonl" <<'PY'
import json, sys
mem = json.loads(open(sys.argv[1]).readline())["memory"]
assert mem["ghost_bytes_per_weight"] <= 2.0, mem
assert mem["ghost_weights"] == 2 * (2 * 64 * 64 + 2 * 32 * 64 + 3 * 64 * 160), mem
print("primal memory:", mem)
PY

expect_fail "unknown grid" "$T" train "$w/base.ini" "train.out_dir=$w/x1" quant.grid=prime999
expect_fail "bad act_bits" "$T" train "$w/base.ini" "train.out_dir=$w/x2" quant.grid=ternary quant.act_bits=4
expect_fail "tied head quant" "$T" train "$w/base.ini" "train.out_dir=$w/x3" quant.grid=ternary quant.layers=head model.tied_embeddings=true
expect_fail "bad primal p_max" "$T" train "$w/base.ini" "train.out_dir=$w/x4" optim.method=primal primal.p_max=2
expect_fail "primal key without primal" "$T" train "$w/base.ini" "train.out_dir=$w/x5" primal.z=2
echo "all quantized-training checks passed"
