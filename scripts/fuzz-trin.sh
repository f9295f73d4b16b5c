#!/usr/bin/env bash
# Build the TRIN reader's libFuzzer target with clang (+ ASan/UBSan) and fuzz it for a bounded time.
#   scripts/fuzz-trin.sh [SECONDS]        default 60; environment: BUILD_DIR (default build-fuzz), JOBS
# The same as scripts/fuzz.sh trin [SECONDS] (which also fuzzes the other readers). Seeds: small valid
# .trin files written by fuzz_trin_seed, plus a persistent corpus in $BUILD_DIR/fuzz-corpus. A crash leaves
# crash-* in $BUILD_DIR and exits non-zero.
set -euo pipefail
exec "$(dirname "$0")/fuzz.sh" trin "${1:-60}"
