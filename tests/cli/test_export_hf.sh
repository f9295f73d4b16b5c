#!/usr/bin/env bash
# trinity export --format hf from the command line, without transformers (scripts/check-hf-export.py runs
# transformers itself): dense, STE-ternary with int8 activations, STE prime7 and PRIMAL checkpoints of a tiny
# model (2 training steps each) and a Qwen3-shaped one are exported with --hf-dtype f32, imported back with
# `trinity import`, and `trinity eval` of the re-imported model gives the original's loss exactly (for the
# act8 run: the float-activation loss, and the export says so); a bf16 export is within bfloat16 rounding;
# the directory holds config.json and model.safetensors (h5py-free check of the header), the bytes tokenizer
# of an imported model becomes tokenizer.json + tokenizer_config.json that `trinity tokenize` reads; then
# the summary lines, --json, bad input (one error line, exit 1, nothing left behind) and usage errors.
source "$(dirname "$0")/helpers/train_common.sh"

cat > "$w/base.ini" <<INI
[model]
dim = 64
n_layers = 2
n_heads = 4
n_kv_heads = 2
ffn_dim = 96
vocab_size = 300
tied_embeddings = false
[data]
train = $w/train.h5
val = $w/val.h5
[train]
batch = 2
seq_len = 32
steps = 2
eval_every = 2
eval_batches = 1
ckpt_every = 2
threads = 2
[optim]
lr = 3e-3
INI
run() { "$T" train "$w/base.ini" "train.out_dir=$w/run-$1" "${@:2}" 2> "$w/err" || { cat "$w/err"; fail "$1 run"; }; }
run dense
run ste quant.grid=ternary quant.scale_per_row=true quant.layers=attn,mlp quant.act_bits=8
run prime7 quant.grid=prime7 quant.layers=attn,mlp
run primal optim.method=primal primal.scale_per_row=true
run qwen3 model.qk_norm=true model.head_dim=32 model.tied_embeddings=true

loss() { "$T" eval "$1" --data "$w/val.h5" --seq-len 32 --json 2> /dev/null | "$PY" -c 'import json,sys; print(repr(json.load(sys.stdin)["loss"]))'; }

# hf_check NAME CKPT [EXPORT OPTIONS...]: export f32, import back, same eval loss as the checkpoint
hf_check() {
  local name=$1 ck=$2; shift 2
  "$T" export "$ck" -o "$w/$name" --format hf --hf-dtype f32 "$@" > "$w/$name.out" 2> "$w/$name.err" ||
    { cat "$w/$name.err"; fail "$name: export"; }
  [ -s "$w/$name/config.json" ] && [ -s "$w/$name/model.safetensors" ] || fail "$name: files missing"
  "$T" import "$w/$name" -o "$w/$name-back.h5" > /dev/null 2> "$w/err" || { cat "$w/err"; fail "$name: import"; }
  local a b
  a=$(loss "$ck"); b=$(loss "$w/$name-back.h5")
  echo "$name: trinity eval $a, exported and re-imported $b"
  [ "$a" = "$b" ] || fail "$name: loss $a != $b"
}
hf_check dense "$w/run-dense/ckpt-000002.h5"
hf_check prime7 "$w/run-prime7/ckpt-000002.h5"
hf_check primal "$w/run-primal/ckpt-000002.h5"
hf_check qwen3 "$w/run-qwen3/ckpt-000002.h5"
grep -q '"Qwen3ForCausalLM"' "$w/qwen3/config.json" || fail "qwen3 architecture: $(cat "$w/qwen3/config.json")"

# STE with int8 activations: the export warns (one line) and reports it; the re-imported model is the
# snapped weights with float activations, as transformers will run it
"$T" export "$w/run-ste/ckpt-000002.h5" -o "$w/ste" --format hf --hf-dtype f32 > "$w/ste.out" 2> "$w/ste.err" ||
  { cat "$w/ste.err"; fail "ste export"; }
[ "$(grep -c 'int8 activations' "$w/ste.err")" -eq 1 ] || fail "act8 warning: $(cat "$w/ste.err")"
grep -q 'int8 activations' "$w/ste.out" || fail "act8 in the summary: $(cat "$w/ste.out")"
"$T" import "$w/ste" -o "$w/ste-back.h5" > /dev/null 2>&1 || fail "ste import"
echo "ste act8: trinity eval $(loss "$w/run-ste/ckpt-000002.h5"), float activations $(loss "$w/ste-back.h5")"

# synthetic ternary: the same loss as the .trin export evaluated exactly
"$T" export "$w/run-dense/ckpt-000002.h5" -o "$w/syn.trin" --quantize ternary > /dev/null 2>&1 || fail "trin export"
hf_check_syn() {
  "$T" export "$w/run-dense/ckpt-000002.h5" -o "$w/syn" --format hf --hf-dtype f32 --quantize ternary > "$w/syn.out" 2> /dev/null ||
    fail "synthetic export"
  "$T" import "$w/syn" -o "$w/syn-back.h5" > /dev/null 2>&1 || fail "synthetic import"
  local a b
  a=$(loss "$w/syn.trin"); b=$(loss "$w/syn-back.h5")
  echo "synthetic ternary: .trin $a, hf re-imported $b"
  "$PY" -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); sys.exit(abs(a - b) > 1e-5 * abs(a))" "$a" "$b" ||
    fail "synthetic: $a vs $b"
}
hf_check_syn
grep -q '(synthetic, ternary) -> .*: LlamaForCausalLM, 21 tensors F32 (14 dequantized)' "$w/syn.out" || fail "synthetic summary: $(cat "$w/syn.out")"

# bf16 (the default): within bfloat16 rounding of the f32 weights
"$T" export "$w/run-primal/ckpt-000002.h5" -o "$w/bf16" --format hf > /dev/null 2>&1 || fail "bf16 export"
"$T" import "$w/bf16" -o "$w/bf16-back.h5" > /dev/null 2>&1 || fail "bf16 import"
"$PY" - "$w/primal-back.h5" "$w/bf16-back.h5" "$w/bf16/model.safetensors" <<'PY' || fail "bf16 values"
import json, struct, sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
worst = 0.0
for name in a["params"]:
    x, y = np.asarray(a["params"][name], np.float64), np.asarray(b["params"][name], np.float64)
    nz = x != 0
    worst = max(worst, float(np.max(np.abs(y - x)[nz] / np.abs(x)[nz], initial=0)))
assert worst <= 2 ** -8, worst
raw = open(sys.argv[3], "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
h = json.loads(raw[8:8 + n])
assert n % 8 == 0 and h["__metadata__"]["format"] == "pt", h["__metadata__"]
assert all(v["dtype"] == "BF16" for k, v in h.items() if k != "__metadata__")
print(f"bf16: largest relative difference from the f32 weights {worst:.3g} (<= 2^-8)")
PY
cfg_dtype=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["torch_dtype"])' "$w/bf16/config.json")
[ "$cfg_dtype" = bfloat16 ] || fail "torch_dtype $cfg_dtype"

# a tokenizer: import the dense export with the bytes tokenizer, export again: tokenizer files that
# `trinity tokenize` reads as the bytes tokenizer
"$T" import "$w/dense" -o "$w/tok.h5" --tokenizer bytes > /dev/null 2> "$w/err" || { cat "$w/err"; fail "import --tokenizer bytes"; }
"$T" export "$w/tok.h5" -o "$w/tok" --format hf > "$w/tok.out" 2> "$w/tok.err" || { cat "$w/tok.err"; fail "tok export"; }
[ -s "$w/tok/tokenizer.json" ] && [ -s "$w/tok/tokenizer_config.json" ] || fail "tokenizer files"
grep -q 'tokenizer: bytes, 258 tokens' "$w/tok.out" || fail "tokenizer summary: $(cat "$w/tok.out")"
a=$("$T" tokenize --tokenizer bytes --text "Hello, wörld  12" --bos); b=$("$T" tokenize --tokenizer "$w/tok" --text "Hello, wörld  12" --bos)
[ "$a" = "$b" ] || fail "tokenizer.json ids: $a vs $b"
echo "tokenizer.json ids as the bytes tokenizer: $b"
grep -q 'has no tokenizer' "$w/dense.err" || fail "no-tokenizer warning: $(cat "$w/dense.err")"

"$T" export "$w/run-dense/ckpt-000002.h5" -o "$w/j" --format hf --json > "$w/out" 2> /dev/null || fail "export --json"
"$PY" - "$w/out" <<'PY' || fail "export --json content"
import json, sys
o = json.loads(open(sys.argv[1]).read())
assert o["format"] == "hf" and o["kind"] == "dense" and o["architecture"] == "LlamaForCausalLM", o
assert o["dtype"] == "BF16" and o["tensors"] == 21 and o["act8_tensors"] == 0 and o["tokenizer"].startswith("none"), o
PY

# ---- bad input: one error line, exit 1, nothing left behind ----
expect_error() {
  local name=$1; shift
  set +e; "$@" > "$w/out" 2> "$w/err"; local rc=$?; set -e
  [ $rc -eq 1 ] || { cat "$w/err"; fail "$name: exit $rc, expected 1"; }
  [ "$(grep -c '^trinity: error: ' "$w/err")" -eq 1 ] && tail -1 "$w/err" | grep -q '^trinity: error: ' ||
    { cat "$w/err"; fail "$name: expected one error line, last"; }
  echo "ok: $name: $(tail -1 "$w/err")"
}
expect_error "existing directory" "$T" export "$w/run-dense/ckpt-000002.h5" -o "$w/run-dense" --format hf
grep -q 'not empty' "$w/err" || fail "existing: $(cat "$w/err")"
expect_error "unknown --hf-dtype" "$T" export "$w/run-dense/ckpt-000002.h5" -o "$w/x" --format hf --hf-dtype f16
expect_error "missing checkpoint" "$T" export "$w/nope.h5" -o "$w/x" --format hf
expect_error "quantize a quantized one" "$T" export "$w/run-ste/ckpt-000002.h5" -o "$w/x" --format hf --quantize ternary
expect_error "no such parent" "$T" export "$w/run-dense/ckpt-000002.h5" -o "$w/no/such/x" --format hf
# q/k norms together with q/k/v biases: no transformers class
"$T" train "$w/base.ini" "train.out_dir=$w/run-both" model.qk_norm=true model.qkv_bias=true 2> "$w/err" || { cat "$w/err"; fail "both run"; }
expect_error "config transformers cannot express" "$T" export "$w/run-both/ckpt-000002.h5" -o "$w/x" --format hf
grep -q 'no transformers class' "$w/err" || fail "config message: $(cat "$w/err")"
[ -e "$w/x" ] && fail "a failed export left a directory"
ls -d "$w"/*.tmp-* > /dev/null 2>&1 && fail "temporary directory left behind"

# ---- usage: exit 2 ----
for args in "--format onnx" "--hf-dtype f32" "--format hf --dtype f16" "--format hf --strict" "--format hf --hf-dtype"; do
  set +e; "$T" export "$w/run-dense/ckpt-000002.h5" -o "$w/x" $args > /dev/null 2>&1; rc=$?; set -e
  [ $rc -eq 2 ] || fail "usage '$args': exit $rc"
done
"$T" export --help | grep -q -- '--hf-dtype' || fail "export --help"
echo "test_export_hf.sh: all passed"
