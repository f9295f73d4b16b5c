#!/usr/bin/env bash
# Build the TRIN reader's libFuzzer target with clang (+ ASan/UBSan) and fuzz it for a bounded time.
#   scripts/fuzz-trin.sh [SECONDS]        default 60; environment: BUILD_DIR (default build-fuzz), JOBS
# Seeds: small valid .trin files written by fuzz_trin_seed, plus a persistent corpus in
# $BUILD_DIR/fuzz-corpus. A crash leaves crash-* in $BUILD_DIR and exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
build=${BUILD_DIR:-build-fuzz}
jobs=${JOBS:-$(nproc)}

command -v clang >/dev/null || { echo "fuzz-trin: clang not found (apt-get install clang libclang-rt-dev)" >&2; exit 1; }
cmake -S . -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTN_FUZZ=ON -DTN_SANITIZE=ON \
      -DTN_BUILD_TESTS=ON >/dev/null
cmake --build "$build" -j "$jobs" --target fuzz_trin fuzz_trin_seed

corpus=$build/fuzz-corpus
mkdir -p "$corpus" "$build/fuzz-seeds"
"$build/fuzz_trin_seed" "$build/fuzz-seeds"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp:print_suppressions=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export OMP_NUM_THREADS=1
cd "$build"
./fuzz_trin -max_total_time="$secs" -max_len=65536 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    fuzz-corpus fuzz-seeds
