#!/usr/bin/env bash
# Does llama.cpp run what `trinity export --format gguf` writes, and does it compute what trinity computes?
# Not part of CI: it builds llama.cpp (pip install llama-cpp-python compiles it, 10-20 minutes on 2 cores).
#
#   1. pip install llama-cpp-python into a virtual environment of its own (LLAMA_VENV to reuse one)
#   2. trinity import the SmolLM2-135M-Instruct GGUF of ../shared/data/smollm2, then export it twice to GGUF:
#      dense (F16) and synthetic ternary (--quantize ternary: TQ2_0 where rows are 1536 long, Q4_0 for the
#      576-long ones); the ternary model also as .trin for `trinity eval` / `trinity run`
#   3. the same WikiText-2 test tokens (a `trinity prepare text` shard of wiki.test.raw, CRs removed) scored by
#      `trinity eval` and by llama.cpp over the same non-overlapping windows (train/eval.h: window w feeds
#      tokens [wT, wT + T) and predicts [wT + 1, wT + T]); PASS when the mean losses agree within 2%
#   4. the greedy continuation of a prompt from `trinity run --exact` and from llama.cpp, and their common prefix
#   5. each architecture the exporter writes (llama, qwen2 with q/k/v biases, qwen3 with q/k norms and an
#      explicit head dim): a tiny model trained 30 steps, exported F32 (losses within 1e-4) and ternary (2%)
# The ternary model is also exported with --gguf-ternary f16 (the same ±fp16(scale) values as F16): llama.cpp
# then multiplies in float instead of quantizing activations to 8 bits (Q8_K for TQ2_0, Q8_0 for Q4_0), which
# separates what the file holds from what llama.cpp's kernels round.
#
# usage: scripts/check-gguf-llamacpp.sh [WORK_DIR]      (default: a new temporary directory, kept)
# env:   TRINITY (default build/trinity), LLAMA_VENV, WINDOWS (default 16), SEQ (default 256),
#        LLAMA_CMAKE_ARGS (default below), PROMPT
#
# LLAMA_CMAKE_ARGS defaults to a portable AVX2 build without AVX-512 and AMX: on a Sapphire Rapids Xeon a
# native build (GGML_NATIVE=ON, the default) enables ggml's AMX matmul path, and llama.cpp then crashes
# (SIGSEGV) on the first quantized matmul of any Q4_0 / Q4_1 / Q8_0 model, the original SmolLM2 Q4_1 file
# included (seen with llama-cpp-python 0.3.36); the F16 path runs.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
T=${TRINITY:-$root/build/trinity}
data=$root/../shared/data
SMOL=${SMOL:-$data/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}
WIKI=${WIKI:-$data/wikitext2/wiki.test.raw}
WINDOWS=${WINDOWS:-16}
SEQ=${SEQ:-256}
PROMPT=${PROMPT:-The capital of France is}
PY=/usr/bin/python3 # Debian's, with h5py
work=${1:-$(mktemp -d /tmp/check-gguf-llamacpp.XXXXXX)}
mkdir -p "$work"
venv=${LLAMA_VENV:-$work/venv}
cmake_args=${LLAMA_CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DLLAMA_CURL=OFF}
[ -x "$T" ] || { echo "check-gguf-llamacpp: $T not found (build first, or set TRINITY)"; exit 1; }
[ -r "$SMOL" ] && [ -r "$WIKI" ] || { echo "check-gguf-llamacpp: $SMOL or $WIKI missing"; exit 1; }
echo "work directory: $work"

# ---- 1. llama.cpp ----
if ! "$venv/bin/python" -c "import llama_cpp" 2>/dev/null; then
  python3 -m venv "$venv"
  echo "building llama-cpp-python (CMAKE_ARGS=$cmake_args), log in $work/pip.log ..."
  t0=$(date +%s)
  if ! CMAKE_ARGS="$cmake_args" CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) "$venv/bin/pip" install --no-cache-dir llama-cpp-python \
      > "$work/pip.log" 2>&1; then
    tail -20 "$work/pip.log"
    echo "check-gguf-llamacpp: pip could not build llama-cpp-python (log: $work/pip.log)"
    exit 1
  fi
  echo "built in $(( $(date +%s) - t0 )) s"
fi
"$venv/bin/python" -c "import llama_cpp; print('llama-cpp-python', llama_cpp.__version__)"

# ---- 2. the models ----
"$T" import "$SMOL" -o "$work/smol.h5" > /dev/null
"$T" export "$work/smol.h5" -o "$work/smol-f16.gguf"
"$T" export "$work/smol.h5" -o "$work/smol-ternary.gguf" --quantize ternary
"$T" export "$work/smol.h5" -o "$work/smol-ternary-f16.gguf" --quantize ternary --gguf-ternary f16 > /dev/null
"$T" export "$work/smol.h5" -o "$work/smol-ternary.trin" --quantize ternary > /dev/null

# ---- 3. the tokens and trinity's losses ----
tr -d '\r' < "$WIKI" > "$work/wiki.test.txt"
"$T" prepare text --tokenizer "$SMOL" --in "$work/wiki.test.txt" -o "$work/wiki.h5" --doc-split none > /dev/null
"$PY" - "$work/wiki.h5" "$work/tokens.txt" $(( WINDOWS * SEQ + 1 )) <<'PY'
import sys, h5py
f = h5py.File(sys.argv[1], "r")
n = int(sys.argv[3])
toks, mask = f["tokens"][:n], f["loss_mask"][:n]
with open(sys.argv[2], "w") as o:
    o.write(" ".join(map(str, toks)) + "\n" + " ".join(map(str, mask)) + "\n")
PY
eval_json() { "$T" eval "$1" --data "$work/wiki.h5" --seq-len "$SEQ" --max-windows "$WINDOWS" --json; }
tr_dense=$(eval_json "$work/smol.h5")
tr_tern=$(eval_json "$work/smol-ternary.trin")
run_greedy() { "$T" run "$1" -p "$PROMPT" -n 24 --temp 0 --repeat-penalty 1 --no-stop --exact 2> /dev/null; }
run_dense=$(run_greedy "$work/smol.h5")
run_tern=$(run_greedy "$work/smol-ternary.trin")

# ---- 4. llama.cpp on the same windows, and the comparison ----
smol_rc=0
"$venv/bin/python" - "$work" "$SEQ" "$WINDOWS" "$PROMPT" "$tr_dense" "$tr_tern" "$run_dense" "$run_tern" <<'PY' || smol_rc=$?
import json, sys, time
import numpy as np
from llama_cpp import Llama

work, T, W, prompt = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
tr = {"f16": json.loads(sys.argv[5]), "ternary": json.loads(sys.argv[6])}
tr_text = {"f16": sys.argv[7], "ternary": sys.argv[8]}
tr["ternary-f16"], tr_text["ternary-f16"] = tr["ternary"], tr_text["ternary"]  # the same model, ternary layers as F16
lines = open(f"{work}/tokens.txt").read().split("\n")
toks = np.array(lines[0].split(), dtype=np.int64)
mask = np.array(lines[1].split(), dtype=np.int64)


def common_prefix(a, b):
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


ok = True
for name in ("f16", "ternary", "ternary-f16"):
    path = f"{work}/smol-{name}.gguf"
    llm = Llama(model_path=path, n_ctx=T, n_batch=T, n_ubatch=T, n_threads=2, logits_all=True, verbose=False)
    nll, count, t0 = 0.0, 0, time.time()
    for w in range(W):
        x = toks[w * T:w * T + T + 1]
        if len(x) < 2:
            break
        llm.reset()
        llm.eval(x[:-1].tolist())
        logits = np.asarray(llm.scores[:len(x) - 1], dtype=np.float64)
        m = logits.max(axis=1, keepdims=True)
        logp = logits - m - np.log(np.exp(logits - m).sum(axis=1, keepdims=True))
        tgt, msk = x[1:], mask[w * T + 1:w * T + len(x)]
        nll -= float((logp[np.arange(len(tgt)), tgt] * msk).sum())
        count += int(msk.sum())
    loss = nll / count
    out = llm.create_completion(prompt, max_tokens=24, temperature=0.0, top_k=1, top_p=1.0, repeat_penalty=1.0)
    text = out["choices"][0]["text"]
    rel = abs(loss - tr[name]["loss"]) / tr[name]["loss"]
    good = rel <= 0.02 and count == tr[name]["tokens"]
    ok &= good
    print(f"{name:11s} llama.cpp loss {loss:.4f} (ppl {np.exp(loss):.2f}) over {count} tokens in {time.time() - t0:.1f}s; "
          f"trinity eval {tr[name]['loss']:.4f} (ppl {tr[name]['ppl']:.2f}) over {tr[name]['tokens']}; "
          f"relative difference {100 * rel:.2f}% {'PASS' if good else 'FAIL'}")
    a, b = tr_text[name], text
    print(f"            greedy '{prompt}' -> llama.cpp {b!r}")
    print(f"                                     trinity   {a!r}   (common prefix {common_prefix(a, b)} of {len(a)} chars)")
sys.exit(0 if ok else 1)
PY

# ---- 5. every architecture the exporter writes: tiny llama, qwen2 (q/k/v biases), qwen3 (q/k norms, head
#         dim 32 != 64 / 4) models, 30 training steps on a pattern shard, exported F32 and ternary ----
fam=$work/families
mkdir -p "$fam"
"$PY" "$root/tests/cli/helpers/make_pattern_shard.py" "$fam/train.h5" 20000 258 1
"$PY" "$root/tests/cli/helpers/make_pattern_shard.py" "$fam/val.h5" 3000 258 2
cat > "$fam/base.ini" <<INI
[model]
dim = 64
n_layers = 2
n_heads = 4
n_kv_heads = 2
ffn_dim = 256
tied_embeddings = false
[data]
train = $fam/train.h5
val = $fam/val.h5
[train]
batch = 4
seq_len = 32
steps = 30
eval_every = 30
eval_batches = 1
ckpt_every = 30
threads = 2
[optim]
lr = 3e-3
INI
"$PY" - "$fam/val.h5" "$fam/tokens.txt" 641 <<'PY'
import sys, h5py
f = h5py.File(sys.argv[1], "r")
n = int(sys.argv[3])
with open(sys.argv[2], "w") as o:
    o.write(" ".join(map(str, f["tokens"][:n])) + "\n" + " ".join(map(str, f["loss_mask"][:n])) + "\n")
PY
fam_json=""
for spec in "llama" "qwen2 model.qkv_bias=true" "qwen3 model.qk_norm=true model.head_dim=32"; do
  set -- $spec; n=$1; shift
  "$T" train "$fam/base.ini" "train.out_dir=$fam/$n" "$@" > /dev/null 2>&1
  ck=$fam/$n/ckpt-000030.h5
  "$T" export "$ck" -o "$fam/$n-f32.gguf" --dtype f32 --tokenizer bytes > /dev/null
  "$T" export "$ck" -o "$fam/$n-ternary.gguf" --quantize ternary --tokenizer bytes > /dev/null
  "$T" export "$ck" -o "$fam/$n-ternary.trin" --quantize ternary > /dev/null 2>&1
  e1=$("$T" eval "$ck" --data "$fam/val.h5" --seq-len 32 --max-windows 20 --json)
  e2=$("$T" eval "$fam/$n-ternary.trin" --data "$fam/val.h5" --seq-len 32 --max-windows 20 --json)
  fam_json="$fam_json$n-f32 $e1\n$n-ternary $e2\n"
done
printf "$fam_json" > "$fam/trinity.txt"
fam_rc=0
"$venv/bin/python" - "$fam" <<'PY' || fam_rc=$?
import json, sys
import numpy as np
from llama_cpp import Llama

fam = sys.argv[1]
T, W = 32, 20
lines = open(f"{fam}/tokens.txt").read().split("\n")
toks, mask = np.array(lines[0].split(), dtype=np.int64), np.array(lines[1].split(), dtype=np.int64)
ok = True
for line in open(f"{fam}/trinity.txt").read().strip().split("\n"):
    name, js = line.split(" ", 1)
    tr = json.loads(js)
    llm = Llama(model_path=f"{fam}/{name}.gguf", n_ctx=64, n_batch=64, n_threads=2, logits_all=True, verbose=False)
    nll, count = 0.0, 0
    for w in range(W):
        x = toks[w * T:w * T + T + 1]
        llm.reset()
        llm.eval(x[:-1].tolist())
        lg = np.asarray(llm.scores[:T], dtype=np.float64)
        m = lg.max(axis=1, keepdims=True)
        lp = lg - m - np.log(np.exp(lg - m).sum(axis=1, keepdims=True))
        mk = mask[w * T + 1:w * T + T + 1]
        nll -= float((lp[np.arange(T), x[1:]] * mk).sum())
        count += int(mk.sum())
    loss = nll / count
    rel = abs(loss - tr["loss"]) / tr["loss"]
    bound = 1e-4 if name.endswith("f32") else 0.02
    good = rel <= bound and count == tr["tokens"]
    ok &= good
    print(f"{name:14s} llama.cpp loss {loss:.6f}, trinity eval {tr['loss']:.6f} over {count} tokens: relative "
          f"difference {rel:.1e} (bound {bound:g}) {'PASS' if good else 'FAIL'}")
sys.exit(0 if ok else 1)
PY
[ $smol_rc -eq 0 ] && [ $fam_rc -eq 0 ] && echo "check-gguf-llamacpp: PASS" || { echo "check-gguf-llamacpp: FAIL"; exit 1; }
