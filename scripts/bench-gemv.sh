#!/usr/bin/env bash
# Packed-kernel matrix-vector benchmark: builds trinity (Release) if needed and runs
# `trinity bench gemv --json` (T2 for 2048x2048, 5632x2048, 2048x5632 with 2 threads, next to the scalar
# path, OpenBLAS sgemv, L4/L8 and the memory read bandwidth, all in one run), then prints a summary.
# Usage: scripts/bench-gemv.sh [--threads N] [--iters N] [--build DIR]
# The machine should be otherwise idle: other jobs on the same cores make the medians meaningless.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=2; ITERS=2000; BUILD=build
while [ $# -gt 0 ]; do
  case $1 in
    --threads) THREADS=$2; shift 2;; --iters) ITERS=$2; shift 2;; --build) BUILD=$2; shift 2;;
    *) echo "usage: $0 [--threads N] [--iters N] [--build DIR]"; exit 2;;
  esac
done
if [ ! -x "$BUILD/trinity" ]; then
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD" -j "$(nproc)" --target trinity
fi
# Spin-waiting workers keep the fork/join of back-to-back products at well under a microsecond.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-active} OMP_PROC_BIND=${OMP_PROC_BIND:-close}
export OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS
out=$("$BUILD/trinity" bench gemv --threads "$THREADS" --iters "$ITERS" --json)
echo "$out"
/usr/bin/python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in sys.argv[1].splitlines() if l.strip()]
if rows:
    print(f"\nkernels {rows[0]['kernels']}, {rows[0]['threads']} threads, read bandwidth {rows[0]['read_bw_gbs']:.1f} GB/s")
print(f"{'shape':>10} {'T2 hot us':>10} {'T2 stream':>10} {'bw bound':>9} {'scalar x':>9} {'sgemv x':>8}"
      f" {'L4 us':>8} {'L8 us':>8} {'TQ2_0 ref':>9}")
for r in rows:
    print(f"{r['shape']:>10} {r['t2_us']:10.1f} {r['t2_stream_us']:10.1f} {r['t2_bw_bound_us']:9.1f}"
          f" {r['speedup_vs_scalar']:9.1f} {r['speedup_vs_sgemv']:8.1f} {r['l4_us']:8.1f} {r['l8_us']:8.1f}"
          f" {r['ref_llamacpp_tq2_0_us']:9.1f}")
PY
