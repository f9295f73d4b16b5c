#!/usr/bin/env bash
# trinity export --format gguf from the command line, checked with the gguf package from PyPI (llama.cpp's
# gguf-py, installed by scripts/setup.sh into .venv; without it this test skips): dense, synthetic-ternary,
# STE-ternary (per-row absmean, 2 training steps) and PRIMAL (2 steps) checkpoints of a tiny model are
# exported (TQ2_0 / TQ1_0 / Q4_0 / Q8_0 / F16 / F32), re-imported with `trinity import`, and
# helpers/check_gguf_export.py compares gguf-py's dequantized tensors with trinity's and with the checkpoint;
# then the summary lines, --strict, bad input (one error line, exit 1, no output file) and usage errors.
source "$(dirname "$0")/helpers/train_common.sh"
"$PY" -c "import gguf" 2>/dev/null || { echo "SKIPPED: the gguf package is not installed for $PY (scripts/setup.sh installs it into .venv)"; exit 77; }
check="$here/helpers/check_gguf_export.py"

cat > "$w/base.ini" <<INI
[model]
dim = 64
n_layers = 2
n_heads = 4
n_kv_heads = 2
ffn_dim = 256
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
"$T" train "$w/base.ini" "train.out_dir=$w/dense" 2> "$w/err" || { cat "$w/err"; fail "dense run"; }
"$T" train "$w/base.ini" "train.out_dir=$w/ste" quant.grid=ternary quant.scale_per_row=true quant.layers=attn,mlp 2> "$w/err" \
  || { cat "$w/err"; fail "STE run"; }
"$T" train "$w/base.ini" "train.out_dir=$w/primal" optim.method=primal primal.scale_per_row=true 2> "$w/err" \
  || { cat "$w/err"; fail "PRIMAL run"; }

# export_check NAME CKPT KIND [EXPORT OPTIONS...]: export, re-import, compare with gguf-py
export_check() {
  local name=$1 ck=$2 kind=$3; shift 3
  "$T" export "$ck" -o "$w/$name.gguf" "$@" > "$w/$name.out" 2> "$w/$name.err" || { cat "$w/$name.err"; fail "$name: export"; }
  "$T" import "$w/$name.gguf" -o "$w/$name-back.h5" > /dev/null 2> "$w/err" || { cat "$w/err"; fail "$name: import"; }
  "$PY" "$check" "$w/$name.gguf" "$w/$name-back.h5" "$ck" "$kind" || fail "$name: gguf-py check"
}
export_check dense "$w/dense/ckpt-000002.h5" dense
export_check dense32 "$w/dense/ckpt-000002.h5" dense --dtype f32
export_check synthetic "$w/dense/ckpt-000002.h5" synthetic --quantize ternary
export_check synthetic-tq1 "$w/dense/ckpt-000002.h5" synthetic --quantize ternary --gguf-ternary tq1_0
export_check ste "$w/ste/ckpt-000002.h5" ste --format gguf
export_check ste-q8 "$w/ste/ckpt-000002.h5" ste --gguf-ternary q8_0
export_check primal "$w/primal/ckpt-000002.h5" primal

# ---- what the export says ----
grep -q 'GGUF llama' "$w/synthetic.out" && grep -q 'TQ2_0 x2' "$w/synthetic.out" && grep -q 'Q4_0 x12' "$w/synthetic.out" ||
  fail "synthetic summary: $(cat "$w/synthetic.out")"
grep -q '^  ffn_down.weight  *TQ1_0$' "$w/synthetic-tq1.out" && grep -q '^  attn_q.weight  *Q4_0$' "$w/synthetic-tq1.out" ||
  fail "per-kind types: $(cat "$w/synthetic-tq1.out")"
grep -q 'block scales rounded to fp16: largest relative error' "$w/ste.out" || fail "scale tolerance line: $(cat "$w/ste.out")"
grep -q 'has no tokenizer' "$w/dense.err" || fail "no-tokenizer warning: $(cat "$w/dense.err")"
grep -q 'cannot be stored exactly' "$w/primal.err" || fail "PRIMAL fallback warning: $(cat "$w/primal.err")"
"$T" export "$w/ste/ckpt-000002.h5" -o "$w/j.gguf" --json > "$w/out" || fail "export --json"
"$PY" - "$w/out" <<'PY' || fail "export --json content"
import json, sys
o = json.loads(open(sys.argv[1]).read())
assert o["format"] == "gguf" and o["kind"] == "ste" and o["architecture"] == "llama", o
assert o["types"]["TQ2_0"] == 2 and o["types"]["Q4_0"] == 12 and o["tensor_types"]["attn_q.weight"] == "Q4_0", o
assert 0 < o["max_scale_rel_err"] <= 2 ** -11 and o["fallback_tensors"] == 0, o
PY
[ "$(stat -c %s "$w/synthetic-tq1.gguf")" -lt "$(stat -c %s "$w/synthetic.gguf")" ] || fail "TQ1_0 is not smaller than TQ2_0"
ls "$w"/*.tmp.* > /dev/null 2>&1 && fail "temporary file left behind"

# ---- bad input: one error line, exit 1, no output ----
# (these tiny checkpoints have no tokenizer, so an export that gets as far as the tensors warns first)
expect_error() {
  local name=$1; shift
  set +e; "$@" > "$w/out" 2> "$w/err"; local rc=$?; set -e
  [ $rc -eq 1 ] || { cat "$w/err"; fail "$name: exit $rc, expected 1"; }
  [ "$(grep -c '^trinity: error: ' "$w/err")" -eq 1 ] && tail -1 "$w/err" | grep -q '^trinity: error: ' ||
    { cat "$w/err"; fail "$name: expected one error line, last"; }
  echo "ok: $name: $(tail -1 "$w/err")"
}
expect_error "strict PRIMAL" "$T" export "$w/primal/ckpt-000002.h5" -o "$w/x.gguf" --strict
grep -q -- '--strict' "$w/err" || fail "strict message: $(cat "$w/err")"
expect_error "missing checkpoint" "$T" export "$w/nope.h5" -o "$w/x.gguf"
expect_error "not a checkpoint" "$T" export "$check" -o "$w/x.gguf"
expect_error "quantize a quantized one" "$T" export "$w/ste/ckpt-000002.h5" -o "$w/x.gguf" --quantize ternary
expect_error "no such directory" "$T" export "$w/ste/ckpt-000002.h5" -o "$w/no/dir/x.gguf"
expect_error "vocabulary too small for the tokenizer" "$T" export "$w/dense/ckpt-000002.h5" -o "$w/x.gguf" --tokenizer bytes
[ -e "$w/x.gguf" ] && fail "a failed export left a file"
ls "$w"/*.tmp.* > /dev/null 2>&1 && fail "temporary file left behind"

# ---- usage: exit 2 ----
for args in "--format onnx" "--gguf-ternary q2_k" "--gguf-ternary" "--strict --format trin" "--tokenizer x"; do
  set +e; "$T" export "$w/dense/ckpt-000002.h5" -o "$w/x.trin" $args > /dev/null 2>&1; rc=$?; set -e
  [ $rc -eq 2 ] || fail "usage '$args': exit $rc"
done
"$T" export --help | grep -q -- '--gguf-ternary' || fail "export --help"
echo "test_export_gguf.sh: all passed"
