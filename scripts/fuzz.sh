#!/usr/bin/env bash
# Build one libFuzzer target with clang (+ ASan/UBSan) and fuzz it for a bounded time, single process.
#   scripts/fuzz.sh TARGET [SECONDS]       default 60 seconds
#   TARGET: trin gguf tok_spm tok_json tok_llama2c tok_blob chat safetensors import_llama2c import_gguf import_hf
#           (tests/fuzz/fuzz_TARGET.c), or "all" to run each in turn for SECONDS
# Environment: BUILD_DIR (default build-fuzz), JOBS, MAX_LEN (default 65536), EXTRA_SEEDS (more seed
# directories or files, read only, e.g. real files from ../shared/data; raise MAX_LEN to fit them).
# Seeds: small valid inputs written by fuzz_seed (fuzz_trin_seed for trin) into $BUILD_DIR/fuzz-seeds/TARGET,
# plus a persistent corpus in $BUILD_DIR/fuzz-corpus/TARGET. A crash leaves crash-* (a hang timeout-*) in
# $BUILD_DIR and exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
targets="trin gguf tok_spm tok_json tok_llama2c tok_blob chat safetensors import_llama2c import_gguf import_hf"
target=${1:?usage: scripts/fuzz.sh TARGET|all [SECONDS]  (targets: $targets)}
secs=${2:-60}
build=${BUILD_DIR:-build-fuzz}
jobs=${JOBS:-$(nproc)}
if [ "$target" = all ]; then
    for t in $targets; do "$0" "$t" "$secs"; done
    exit 0
fi
case " $targets " in *" $target "*) ;; *) echo "fuzz: unknown target '$target' (one of: $targets, all)" >&2; exit 2;; esac

command -v clang >/dev/null || { echo "fuzz: clang not found (apt-get install clang libclang-rt-dev)" >&2; exit 1; }
cmake -S . -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTN_FUZZ=ON -DTN_SANITIZE=ON \
      -DTN_BUILD_TESTS=ON >/dev/null
seeder=fuzz_seed
[ "$target" = trin ] && seeder=fuzz_trin_seed
cmake --build "$build" -j "$jobs" --target "fuzz_$target" "$seeder"

# trin keeps the directories it always had (fuzz-corpus, fuzz-seeds); the others get a subdirectory each.
if [ "$target" = trin ]; then corpus=$build/fuzz-corpus seeds=$build/fuzz-seeds
else corpus=$build/fuzz-corpus/$target seeds=$build/fuzz-seeds/$target; fi
mkdir -p "$corpus" "$seeds"
if [ "$target" = trin ]; then "$build/fuzz_trin_seed" "$seeds"; else "$build/fuzz_seed" "$target" "$seeds"; fi
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp:print_suppressions=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export OMP_NUM_THREADS=1
# libFuzzer takes directories only: extra seed files are linked (not copied) into $build/fuzz-extra/TARGET.
extra=()
if [ -n "${EXTRA_SEEDS:-}" ]; then
    xdir=$build/fuzz-extra/$target
    rm -rf "$xdir" && mkdir -p "$xdir"
    for s in $EXTRA_SEEDS; do
        if [ -d "$s" ]; then extra+=("$(realpath "$s")"); else ln -s "$(realpath "$s")" "$xdir/"; fi
    done
    extra+=("$(realpath "$xdir")")
fi
corpus=$(realpath "$corpus") seeds=$(realpath "$seeds")
cd "$build"
"./fuzz_$target" -max_total_time="$secs" -max_len="${MAX_LEN:-65536}" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 "$corpus" "$seeds" "${extra[@]}"
