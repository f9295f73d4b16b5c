#!/usr/bin/env bash
# setup + build + the whole test suite; the CUDA build (compile, link, GPU tests skip without a device);
# the same suite under AddressSanitizer + UBSan; a bounded libFuzzer run of every untrusted-file reader.
# Where the CUDA toolkit's headers are present, the Release and sanitizer builds are TN_CUDA_EMU builds:
# every CUDA kernel runs on the CPU emulator against its CPU counterpart, and `device = cuda` end to end.
# Environment: JOBS (default: nproc), TN_SKIP_SANITIZE=1 to skip the sanitizer pass, TN_SKIP_FUZZ=1 to skip
# the fuzz runs (TN_FUZZ_SECONDS per target, default 20; scripts/fuzz.sh lists the targets).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
jobs=${JOBS:-$(nproc)}

./scripts/setup.sh

emu=OFF
if [ -f /usr/local/cuda/include/cuda_fp16.h ] || [ -n "${CUDA_HOME:-}" ]; then emu=ON; fi

echo "== release build (CUDA emulator: $emu)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DTN_CUDA_EMU=$emu >/dev/null
cmake --build build -j "$jobs"
(cd build && ctest --output-on-failure -j "$jobs")

if command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ]; then
  echo "== CUDA build (compile + link; GPU tests skip without a device)"
  cmake -S . -B build-cuda -DCMAKE_BUILD_TYPE=Release -DTN_CUDA=ON \
        -DCMAKE_CUDA_COMPILER="$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)" >/dev/null
  # The CPU code is the Release build's; only what links CUDA needs building here.
  cmake --build build-cuda -j "$jobs" --target trinity $(cd tests/unit && ls test_cuda*.c | sed 's/\.c$//')
  (cd build-cuda && ctest --output-on-failure -R cuda)
fi

if [ "${TN_SKIP_SANITIZE:-0}" != 1 ]; then
  echo "== AddressSanitizer + UBSan build"
  # RelWithDebInfo: sanitizers with optimisation keep the numeric tests fast enough for CI.
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTN_SANITIZE=ON -DTN_CUDA_EMU=$emu >/dev/null
  cmake --build build-asan -j "$jobs"
  # LeakSanitizer stays on; OpenBLAS/OpenMP thread pools are not leaks we own, hence the suppressions.
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
  export LSAN_OPTIONS=suppressions=$root/tests/lsan.supp:print_suppressions=0
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  (cd build-asan && TN_SANITIZED=1 ctest --output-on-failure -j "$jobs" -LE slow)
fi

if [ "${TN_SKIP_FUZZ:-0}" != 1 ]; then
  echo "== libFuzzer: TRIN, GGUF, safetensors, tokenizer and llama2.c readers, bounded time each"
  ./scripts/fuzz.sh all "${TN_FUZZ_SECONDS:-20}"
fi
