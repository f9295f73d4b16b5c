#!/usr/bin/env bash
# Installs, only where missing, every Debian package that trinity's build, tests, reference scripts and
# benchmarks need. Idempotent: a second run installs nothing and prints nothing but the summary line.
set -euo pipefail

packages=(
  build-essential cmake pkg-config git          # toolchain
  libopenblas-openmp-dev                        # sgemm, OpenMP-threaded
  libhdf5-dev zlib1g-dev libinih-dev libcjson-dev
  python3 python3-torch python3-h5py python3-numpy python3-sentencepiece   # reference scripts, benchmarks
  clang libclang-rt-14-dev                      # libFuzzer target
  g++ libboost-context-dev                      # the CUDA emulator (fibers) for the emulated CUDA tests
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} packages present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "setup: done"
