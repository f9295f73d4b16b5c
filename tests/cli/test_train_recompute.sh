#!/usr/bin/env bash
# [train] recompute = layer: the same losses and gradient norms, bit for bit, as recompute = none, for dense
# AdamW, STE (ternary, int8 activations) and PRIMAL, on the CPU and (where the binary has one: the emulator
# of a test build, or a GPU) on a CUDA device; and the memory plan shows fewer activation bytes.
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
[train]
batch = 2
seq_len = 32
accum = 2
steps = 4
threads = 2
[optim]
lr = 3e-3
INI

devices="cpu"
"$T" train "$w/base.ini" "train.out_dir=$w/probe" train.steps=1 train.device=cuda > /dev/null 2>&1 && devices="cpu cuda"
declare -A method=([dense]="" [ste]="quant.grid=ternary quant.act_bits=8 quant.scale_per_row=true"
                   [primal]="optim.method=primal primal.init_std=0.05")
for d in $devices; do
  for m in dense ste primal; do
    for r in none layer; do
      # shellcheck disable=SC2086
      "$T" train "$w/base.ini" "train.out_dir=$w/$m-$d-$r" "train.device=$d" "train.recompute=$r" ${method[$m]} \
        2> "$w/err" || { cat "$w/err"; fail "$m on $d, recompute $r"; }
    done
    "$PY" - "$w/$m-$d-none/log.jsonl" "$w/$m-$d-layer/log.jsonl" "$m on $d" <<'PY'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
la = [(r["loss"], r["grad_norm"]) for r in a if "loss" in r]
lb = [(r["loss"], r["grad_norm"]) for r in b if "loss" in r]
assert len(la) == 4 and la == lb, (la, lb)
ma, mb = a[0]["memory"]["activation_bytes"], b[0]["memory"]["activation_bytes"]
assert mb < ma, (ma, mb)
print(f"{sys.argv[3]}: 4 steps bit-identical with recompute = layer; activations {ma} -> {mb} bytes")
PY
  done
done
expect_fail "unknown recompute" "$T" train "$w/base.ini" "train.out_dir=$w/bad" train.recompute=all
echo PASS
