#!/usr/bin/env bash
# Times one training step (forward + backward + AdamW) of the SmolLM2-135M shape in trinity and in
# PyTorch on CPU with the same thread count, batch and sequence length, and prints the tokens/s ratio
# trinity / PyTorch. Usage: scripts/bench-train-vs-torch.sh [--batch B] [--seq-len T] [--threads N]
set -euo pipefail
cd "$(dirname "$0")/.."
B=4; T=256; N=$(nproc); STEPS=3
while [ $# -gt 0 ]; do
  case $1 in
    --batch) B=$2; shift 2;; --seq-len) T=$2; shift 2;; --threads) N=$2; shift 2;; --steps) STEPS=$2; shift 2;;
    *) echo "usage: $0 [--batch B] [--seq-len T] [--threads N] [--steps S]"; exit 2;;
  esac
done
[ -x build/trinity ] || { cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build -j "$N"; }
export OMP_NUM_THREADS=$N OPENBLAS_NUM_THREADS=$N
trin=$(build/trinity bench train --preset smollm2-135m --batch "$B" --seq-len "$T" --steps "$STEPS" --threads "$N" --json)
torch=$(/usr/bin/python3 scripts/torch_train_step.py --batch "$B" --seq-len "$T" --threads "$N" --steps "$STEPS")
/usr/bin/python3 - "$trin" "$torch" <<'PY'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"trinity  {a['tokens_per_s']:8.1f} tokens/s  ({a['step_s']:.3f} s/step, {a['gflops']:.1f} GFLOP/s, "
      f"{a['ratio_to_sgemm']:.2f} of sgemm {a['sgemm_gflops']:.1f} GFLOP/s)")
print(f"pytorch  {b['tokens_per_s']:8.1f} tokens/s  ({b['step_s']:.3f} s/step, torch {b['torch']})")
print(json.dumps({"bench": "train-vs-torch", "trinity_tokens_per_s": a["tokens_per_s"],
                  "torch_tokens_per_s": b["tokens_per_s"], "ratio": a["tokens_per_s"] / b["tokens_per_s"]}))
PY
