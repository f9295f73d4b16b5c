#!/usr/bin/env bash
# trinity's CPU runner against llama.cpp on the same ternary model, in the same session (README "Against
# llama.cpp"; issue 16's baseline): one random TinyLlama-1.1B-shape model (22 layers, dim 2048, ffn 5632,
# 32 heads, 4 KV heads, vocab 32000, the Llama-2 tokenizer of ../shared/data), exported with `--quantize
# ternary` to a .trin (T2) and a GGUF (TQ2_0, the same codes), each with an F16 head and an 8-bit one
# (`--head q8`: TRIN Q8, GGUF Q8_0). Each round runs, per head, trinity `bench decode` (tg128) and `bench
# prefill --prompt 128` (pp128) and `llama-bench -p 128 -n 128 -r 3`, so the two share the machine's state;
# it prints one line per measurement and a summary with the ratios, trinity's ratio to its same-run bandwidth
# bound (decode) and to its same-run int8 peak (prefill). Each program loads its file its own default way:
# trinity reads the .trin into huge pages (--load copy), llama-bench maps the GGUF (-lm mmap).
#
# Not part of CI. llama.cpp is built outside the project: e.g. the llama.cpp vendored in the llama-cpp-python
# source distribution (`pip download --no-deps --no-binary :all: llama-cpp-python`), configured with
#   cmake -S vendor/llama.cpp -B build -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON \
#     -DGGML_F16C=ON -DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_VBMI=ON -DGGML_AMX_TILE=OFF \
#     -DGGML_AMX_INT8=OFF -DGGML_OPENMP=ON -DLLAMA_CURL=OFF
#   cmake --build build --target llama-bench
# (AMX off: scripts/check-gguf-llamacpp.sh says why). Run it on an otherwise idle machine.
#
# usage: scripts/bench-vs-llamacpp.sh LLAMA_BENCH [WORK_DIR]    (WORK_DIR keeps the 4.4 GB checkpoint and the
#        exports between runs; default /tmp/bench-vs-llamacpp)
# env:   TRINITY (default build/trinity), ROUNDS (default 2), THREADS (default 2)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
[ $# -ge 1 ] && [ -x "$1" ] || { echo "usage: $0 LLAMA_BENCH [WORK_DIR]" >&2; exit 2; }
lb=$1
work=${2:-/tmp/bench-vs-llamacpp}
T=${TRINITY:-$root/build/trinity}
ROUNDS=${ROUNDS:-2}
THREADS=${THREADS:-2}
PY=/usr/bin/python3 # Debian's, with numpy
tok=$root/../shared/data/llama-tokenizer/tokenizer.model
[ -r "$tok" ] || { echo "bench-vs-llamacpp: $tok not found (../shared/data)" >&2; exit 1; }
mkdir -p "$work"

if [ ! -s "$work/tl.h5" ]; then
  echo "making the random TinyLlama-shape checkpoint in $work ..."
  "$PY" - "$work/hf" "$root/tests/reference" <<'PY'
import sys
import numpy as np
sys.path.insert(0, sys.argv[2])
import llama_ref as R
cfg = R.LlamaConfig(dim=2048, n_layers=22, n_heads=32, n_kv_heads=4, ffn_dim=5632, vocab_size=32000,
                    max_seq_len=2048, rope_theta=10000.0, norm_eps=1e-5, tied_embeddings=False, bos_id=1, eos_id=2)
rng = np.random.default_rng(7)
P = {n: np.ones(s, np.float32) if n.endswith("norm.weight") else rng.standard_normal(s, dtype=np.float32) * 0.02
     for n, s in R.param_shapes(cfg)}
R.write_hf_dir(sys.argv[1], cfg, P, dtype="F16")
PY
  "$T" import "$work/hf" -o "$work/tl.h5" --tokenizer "$tok"
  rm -rf "$work/hf"
fi
for h in f16 q8; do
  for ext in trin gguf; do
    [ -s "$work/tl-$h.$ext" ] || "$T" export "$work/tl.h5" -o "$work/tl-$h.$ext" --quantize ternary --dtype f16 --head "$h"
  done
done

log=$work/results.jsonl
: > "$log"
for r in $(seq 1 "$ROUNDS"); do
  for h in f16 q8; do
    d=$("$T" bench decode --model "$work/tl-$h.trin" --tokens 128 --threads "$THREADS" --json)
    p=$("$T" bench prefill --model "$work/tl-$h.trin" --prompt 128 --threads "$THREADS" --json)
    l=$("$lb" -m "$work/tl-$h.gguf" -t "$THREADS" -p 128 -n 128 -r 3 -o json 2>/dev/null)
    "$PY" - "$r" "$h" "$d" "$p" "$l" >> "$log" <<'PY'
import json, sys
r, h, d, p, l = sys.argv[1], sys.argv[2], *map(json.loads, sys.argv[3:6])
ll = {("pp" if x["n_prompt"] else "tg"): x["avg_ts"] for x in l}
print(json.dumps({"round": int(r), "head": h, "trinity_tg": d["tok_s"], "tg_bound_ratio": d["ratio"],
                  "bytes_per_token": d["bytes_per_token"], "trinity_pp": p["tok_s"],
                  "pp_peak_ratio": p["int8_peak_ratio"], "llama_tg": ll["tg"], "llama_pp": ll["pp"]}))
PY
    tail -1 "$log"
  done
done
"$PY" - "$log" <<'PY'
import json, sys
rows = [json.loads(x) for x in open(sys.argv[1])]
def rng(v, f="{:.1f}"):
    return f.format(min(v)) if f.format(min(v)) == f.format(max(v)) else f"{f.format(min(v))}–{f.format(max(v))}"
print("| head | trinity tg128 (ratio to bound) | llama.cpp tg128 | ratio | trinity pp128 (ratio to int8 peak) | llama.cpp pp128 | ratio |")
print("|---|---|---|---|---|---|---|")
for h in ("f16", "q8"):
    x = [r for r in rows if r["head"] == h]
    g = lambda k: [r[k] for r in x]
    tg = [r["trinity_tg"] / r["llama_tg"] for r in x]
    pp = [r["trinity_pp"] / r["llama_pp"] for r in x]
    print(f"| {h} | {rng(g('trinity_tg'))} ({rng(g('tg_bound_ratio'), '{:.2f}')}) | {rng(g('llama_tg'))} | "
          f"{rng(tg, '{:.2f}')}× | {rng(g('trinity_pp'))} ({rng(g('pp_peak_ratio'), '{:.2f}')}) | "
          f"{rng(g('llama_pp'))} | {rng(pp, '{:.2f}')}× |")
PY
