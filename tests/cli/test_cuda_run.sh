#!/usr/bin/env bash
# Inference on `--device cuda` against the CPU, end to end through the `trinity` binary (in a TN_CUDA_EMU
# build every kernel runs on the CPU emulator; on a GPU machine the same test runs on the card). A tiny
# model (bytes tokenizer, dim 64, 2 layers, 4 heads / 2 KV heads) trained briefly, then evolved a few STE
# steps into ternary with int8 activations (T2), prime7 per row (L4) and prime81 (L8), exported with F16
# embeddings and head:
#   trinity run: greedy and seeded-sampling output on cuda equals the CPU's, for every export and the .h5;
#   trinity eval: the .trin's loss on cuda equals the CPU's within 1e-5 relative (exact; T2 with int8 activations 1e-4), 1e-4 (--fast);
#   trinity bench decode / prefill --model FILE (CPU and cuda) and --preset tiny --device cuda: run, report
#   the model and the device; a prompt longer than the model's context is one error line;
#   bad input: a model larger than the device (TN_CUDA_EMU_MEM), a device index that does not exist: one
#   error line, exit 1. In a build without a CUDA backend the refusal is checked and the rest skipped.
source "$(dirname "$0")/helpers/train_common.sh"

root=$(cd "$here/../.." && pwd)
cat "$root/README.md" "$root"/docs/*.md > "$w/text.txt"
echo >> "$w/text.txt"
"$T" prepare text --tokenizer bytes --in "$w/text.txt" -o "$w/text.h5" --doc-split none > /dev/null

cat > "$w/dense.ini" <<INI
[model]
dim = 64
n_layers = 2
n_heads = 4
n_kv_heads = 2
ffn_dim = 160
tied_embeddings = false
[data]
train = $w/text.h5
[train]
out_dir = $w/dense
batch = 4
seq_len = 64
steps = 40
log_every = 20
threads = 2
[optim]
lr = 5e-3
INI
"$T" train "$w/dense.ini" > /dev/null 2>&1 || fail "dense training"
ste() { # NAME GRID EXTRA-KEY...
  local name=$1 grid=$2; shift 2
  cat > "$w/$name.ini" <<INI
[model]
init = $w/dense/ckpt-000040.h5
[data]
train = $w/text.h5
[train]
out_dir = $w/$name
batch = 4
seq_len = 64
steps = 4
log_every = 2
threads = 2
[optim]
lr = 2e-3
[quant]
grid = $grid
INI
  for kv in "$@"; do echo "$kv" >> "$w/$name.ini"; done
  "$T" train "$w/$name.ini" > /dev/null 2>&1 || fail "STE training $name"
  "$T" export "$w/$name/ckpt-000004.h5" -o "$w/$name.trin" --dtype f16 > "$w/$name.export" 2>/dev/null || fail "export $name"
}
ste t2 ternary "scale = absmean" "act_bits = 8"
ste l4 prime7 "scale = std" "scale_per_row = true"
ste l8 prime81 "scale = std"
grep -q "T2" "$w/t2.export" && grep -q "L4" "$w/l4.export" && grep -q "L8" "$w/l8.export" ||
  fail "exports: $(cat "$w"/*.export)"
"$T" export "$w/dense/ckpt-000040.h5" -o "$w/f16.trin" --dtype f16 > /dev/null 2>&1 || fail "export f16"

# bench decode / prefill of a model file (the CPU; the same on cuda below)
"$T" bench decode --model "$w/l4.trin" --tokens 4 --json > "$w/bdm.json" || fail "bench decode --model"
"$T" bench prefill --model "$w/t2.trin" --prompt 40 --json > "$w/bpm.json" || fail "bench prefill --model"
"$PY" - "$w/bdm.json" "$w/bpm.json" <<'PY' || fail "bench --model JSON"
import json, sys
d, p = (json.loads(open(f).read()) for f in sys.argv[1:3])
assert d["model_file"] == "l4.trin" and d["tokens"] == 4 and d["tok_s"] > 0 and d["bytes_per_token"] > 0, d
assert p["model_file"] == "t2.trin" and p["prompt"] == 40 and p["tok_s"] > 0, p
# 40 tokens read the weights once; the T2 layers' int8 work against the same threads' int8 peak
assert abs(p["bytes_per_token"] - p["weight_bytes"] / 40) < 1 and p["int8_weights"] == 2 * (3 * 64 * 160 + 64 * 64 * 2 + 2 * 64 * 32), p
assert p["int8_peak_gops"] > 0 and 0 < p["int8_peak_ratio"] < 1.5, p
print("ok: bench decode / prefill --model on", d["device"], f"(prefill at {p['int8_peak_ratio']:.3f} of the int8 peak)")
PY
set +e
"$T" bench prefill --model "$w/t2.trin" --prompt 1000 > /dev/null 2> "$w/err"; rc=$?
set -e
[ $rc -eq 1 ] && grep -q "a context of 1000 positions is needed, the model has 64" "$w/err" || fail "prompt past the context: $(cat "$w/err")"

# ---- is there a CUDA device? ------------------------------------------------------------------------------
set +e
"$T" run --tokenizer bytes "$w/t2.trin" -p "The" -n 2 --device cuda > /dev/null 2> "$w/probe.err"
rc=$?
set -e
if [ $rc -ne 0 ]; then
  [ $rc -eq 1 ] && [ "$(wc -l < "$w/probe.err")" -eq 1 ] && grep -q "^trinity: error: .*device cuda" "$w/probe.err" \
    || { cat "$w/probe.err"; fail "--device cuda without a device: expected one error line and exit 1"; }
  echo "ok: refused: $(cat "$w/probe.err")"
  echo "SKIPPED: no CUDA device or backend (the refusal above is correct)"
  exit 77
fi

# ---- run: the same text on both devices --------------------------------------------------------------------
# Sampling draws from the probabilities themselves, so it repeats across devices where the logits agree to
# float rounding. T2 here quantizes activations to int8 (act_bits = 8): a last-bit difference (the devices
# add in different orders) can move an activation to the next int8 step and the logits by ~1e-3, enough to
# change a draw from this barely trained model's flat distribution; its greedy tokens must still agree.
for m in t2.trin l4.trin l8.trin f16.trin dense/ckpt-000040.h5; do
  modes=("--temp 0" "--temp 0.9 --seed 7")
  [ "$m" = t2.trin ] && modes=("--temp 0")
  for mode in "${modes[@]}"; do
    # shellcheck disable=SC2086
    "$T" run --tokenizer bytes "$w/$m" -p "The model" -n 24 --no-stop $mode > "$w/cpu.txt" 2> "$w/cpu.err" || fail "run $m on cpu"
    # shellcheck disable=SC2086
    "$T" run --tokenizer bytes "$w/$m" -p "The model" -n 24 --no-stop $mode --device cuda > "$w/cuda.txt" 2> "$w/cuda.err" ||
      { cat "$w/cuda.err"; fail "run $m on cuda"; }
    cmp -s "$w/cpu.txt" "$w/cuda.txt" || fail "run $m ($mode): cuda wrote '$(cat "$w/cuda.txt")', cpu '$(cat "$w/cpu.txt")'"
    grep -q "on cuda:0" "$w/cuda.err" || fail "run $m: the speed line does not name the device: $(cat "$w/cuda.err")"
  done
  echo "ok: run $m: the same output on cpu and cuda (${modes[*]})"
done

# ---- eval: the same loss -------------------------------------------------------------------------------------
for m in t2 l4 l8 f16; do
  for fast in "" "--fast"; do
    # shellcheck disable=SC2086
    "$T" eval "$w/$m.trin" --data "$w/text.h5" --seq-len 64 --max-windows 4 --json $fast > "$w/ecpu.json" 2>/dev/null ||
      fail "eval $m on cpu"
    # shellcheck disable=SC2086
    "$T" eval "$w/$m.trin" --data "$w/text.h5" --seq-len 64 --max-windows 4 --json $fast --device cuda > "$w/ecuda.json" \
      2>/dev/null || fail "eval $m on cuda"
    # exact: 1e-5, except t2, whose int8 activations turn the two engines' different float summation orders
    # (attention: CPU tiles of sgemm products, CUDA its own kernel) into an occasional flipped rounding step
    # (measured 1.1e-5 under ASan); 1e-4 as scripts/gpu-check.sh allows it on a GPU
    tol=1e-5; { [ -n "$fast" ] || [ "$m" = t2 ]; } && tol=1e-4
    "$PY" - "$w/ecpu.json" "$w/ecuda.json" "$tol" "$m $fast" <<'PY' || fail "eval $m $fast"
import json, sys
a, b = (json.loads(open(p).read()) for p in sys.argv[1:3])
rel = abs(a["loss"] - b["loss"]) / abs(a["loss"])
print(f"ok: eval {sys.argv[4]}: cpu {a['loss']:.7f}, cuda {b['loss']:.7f}, {rel:.1e} relative")
assert a["tokens"] == b["tokens"] and rel <= float(sys.argv[3]), (a, b, rel)
PY
  done
done

# ---- benchmarks ----------------------------------------------------------------------------------------------
"$T" bench decode --preset tiny --device cuda --tokens 4 --json > "$w/bd.json" || fail "bench decode --device cuda"
"$T" bench prefill --preset tiny --device cuda --prompt 80 --json > "$w/bp.json" || fail "bench prefill --device cuda"
"$T" bench decode --model "$w/l8.trin" --device cuda --tokens 4 --json > /dev/null || fail "bench decode --model --device cuda"
"$PY" - "$w/bd.json" "$w/bp.json" <<'PY' || fail "bench JSON"
import json, sys
d, p = (json.loads(open(f).read()) for f in sys.argv[1:3])
assert d["device"] == "cuda:0" and d["tok_s"] > 0 and d["bandwidth_gb_s"] > 0 and d["bytes_per_token"] > 0, d
assert p["device"] == "cuda:0" and p["prompt"] == 80 and p["tok_s"] > 0, p
print("ok: bench decode / prefill on", d["device"])
PY

# ---- bad input -------------------------------------------------------------------------------------------------
if grep -q "emulator" "$w/bd.json"; then
  # 20 MiB hold what the device opens with (cuBLAS workspace, op scratch); the 0.25 MiB left are less than
  # the ~0.9 MiB this model asks for (weights 0.2, KV cache of 64 positions and scratch 0.3, 1/64 spare)
  TN_CUDA_EMU_MEM=20736K expect_fail "model larger than the device" "$T" run --tokenizer bytes "$w/f16.trin" -p "The" -n 2 --device cuda
  grep -q "does not fit" "$w/err" || fail "not-fit message: $(cat "$w/err")"
fi
expect_fail "a device that does not exist" "$T" run --tokenizer bytes "$w/t2.trin" -p "The" -n 2 --device cuda:7
expect_fail "an unknown device" "$T" run --tokenizer bytes "$w/t2.trin" -p "The" -n 2 --device gpu
echo "PASS"
