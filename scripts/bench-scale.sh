#!/usr/bin/env bash
# Data-parallel scaling on one machine (docs/SCALE.md): training tokens/s of 1 process x 2 threads against
# 2 MPI ranks x 1 thread on the SmolLM2-135M shape (576 x 30 layers, vocab 49152, tied), same global batch
# (batch x seq_len x accum), for dense AdamW and for PRIMAL (attention and MLP as ghosts: only the float
# parameters' gradients and int8 votes cross between ranks), and the seconds per step spent in the
# reductions (log.jsonl comm_s). Synthetic random tokens; the first step is left out (warm-up).
# Usage: scripts/bench-scale.sh [--batch B] [--seq-len T] [--accum A] [--steps S]   (defaults 1, 256, 2, 6)
set -euo pipefail
cd "$(dirname "$0")/.."
B=1; T=256; A=2; S=6
while [ $# -gt 0 ]; do
  case $1 in
    --batch) B=$2; shift 2;; --seq-len) T=$2; shift 2;; --accum) A=$2; shift 2;; --steps) S=$2; shift 2;;
    *) echo "usage: $0 [--batch B] [--seq-len T] [--accum A] [--steps S]"; exit 2;;
  esac
done
[ $((A % 2)) -eq 0 ] || { echo "bench-scale: --accum must be even (2 ranks)"; exit 2; }
command -v mpirun > /dev/null || { echo "bench-scale: mpirun missing (scripts/setup.sh installs openmpi-bin)"; exit 1; }
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null && cmake --build build -j "$(nproc)" --target trinity > /dev/null
PY=/usr/bin/python3
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
w=$(mktemp -d); trap 'rm -rf "$w"' EXIT

"$PY" - "$w/train.h5" <<'PY'
import sys, numpy as np
sys.path.insert(0, "tests/reference")
from llama_ref import write_shard
rng = np.random.default_rng(7)
toks = rng.integers(0, 49152, size=400_000, dtype=np.int64)
write_shard(sys.argv[1], toks, np.ones_like(toks, dtype=np.uint8), [0, len(toks)], 49152, 1, 2)
PY

cat > "$w/run.ini" <<INI
[model]
dim = 576
n_layers = 30
n_heads = 9
n_kv_heads = 3
ffn_dim = 1536
vocab_size = 49152
max_seq_len = 2048
rope_theta = 100000
tied_embeddings = true
[data]
train = $w/train.h5
[train]
batch = $B
seq_len = $T
accum = $A
steps = $S
INI

cpu=$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')
echo "bench-scale: $cpu, $(nproc) cores; SmolLM2-135M shape, $B x $T tokens x accum $A per step, $S steps"
declare -A method=([dense]="" [primal]="optim.method=primal primal.ghost_layers=attn,mlp")
for m in dense primal; do
  # shellcheck disable=SC2086
  build/trinity train "$w/run.ini" "train.out_dir=$w/$m-1" train.threads=2 ${method[$m]} 2> "$w/$m-1.err" \
    || { cat "$w/$m-1.err"; exit 1; }
  # shellcheck disable=SC2086
  mpirun -np 2 build/trinity train "$w/run.ini" "train.out_dir=$w/$m-2" train.threads=1 ${method[$m]} \
    > /dev/null 2> "$w/$m-2.err" || { cat "$w/$m-2.err"; exit 1; }
  "$PY" - "$w/$m-1/log.jsonl" "$w/$m-2/log.jsonl" "$m" <<'PY'
import json, statistics, sys
def rows(p):
    return [r for r in map(json.loads, open(p)) if "loss" in r][1:]  # step 1: warm-up
one, two, m = rows(sys.argv[1]), rows(sys.argv[2]), sys.argv[3]
t1 = statistics.median(r["tokens_per_s"] for r in one)
t2 = statistics.median(r["tokens_per_s"] for r in two)
c2 = statistics.median(r["comm_s"] for r in two)
step2 = statistics.median(r["tokens_per_s"] for r in two)
print(f"{m:7s} 1 process x 2 threads {t1:8.1f} tokens/s | 2 ranks x 1 thread {t2:8.1f} tokens/s "
      f"(ratio {t2 / t1:.2f}), reductions {c2 * 1e3:.1f} ms per step")
print(json.dumps({"bench": "scale", "method": m, "tokens_per_s_1x2": t1, "tokens_per_s_2x1": t2,
                  "ratio": t2 / t1, "comm_s_per_step": c2}))
PY
done
