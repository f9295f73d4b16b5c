#!/usr/bin/env bash
# setup + build + the whole test suite, then the same suite under AddressSanitizer + UBSan.
# Environment: JOBS (default: nproc), TN_SKIP_SANITIZE=1 to skip the sanitizer pass.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
jobs=${JOBS:-$(nproc)}

./scripts/setup.sh

echo "== release build"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$jobs"
(cd build && ctest --output-on-failure -j "$jobs")

if [ "${TN_SKIP_SANITIZE:-0}" != 1 ]; then
  echo "== AddressSanitizer + UBSan build"
  # RelWithDebInfo: sanitizers with optimisation keep the numeric tests fast enough for CI.
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTN_SANITIZE=ON >/dev/null
  cmake --build build-asan -j "$jobs"
  # LeakSanitizer stays on; OpenBLAS/OpenMP thread pools are not leaks we own, hence the suppressions.
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
  export LSAN_OPTIONS=suppressions=$root/tests/lsan.supp:print_suppressions=0
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  (cd build-asan && TN_SANITIZED=1 ctest --output-on-failure -j "$jobs" -LE slow)
fi
