#!/usr/bin/env bash
# Installs, only where missing, every Debian package that trinity's build, tests, reference scripts and
# benchmarks need, then the Python packages Debian does not ship (PYTHON_PACKAGES: gguf, the GGUF reader of
# llama.cpp's gguf-py; tensorboard, whose event reader checks trinity's event files; transformers and peft,
# which check the PEFT adapters) into the project-local virtual environment .venv, made with
# --system-site-packages so that Debian's torch, h5py and numpy stay visible; tests/tests.cmake runs Python
# from .venv when it exists.
# Offline, a missing Python package is a warning, not a failure: the tests that need it skip with a message.
# Idempotent: a second run installs nothing and prints nothing but the summary lines.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

packages=(
  build-essential cmake pkg-config git          # toolchain
  libopenblas-openmp-dev                        # sgemm, OpenMP-threaded
  libhdf5-dev zlib1g-dev libinih-dev libcjson-dev
  libisal-dev                                   # CRC-32C for TensorBoard event files
  libopenmpi-dev openmpi-bin                    # data-parallel training: mpirun -np N trinity train (docs/SCALE.md)
  python3 python3-torch python3-h5py python3-numpy python3-sentencepiece   # reference scripts, benchmarks
  python3-matplotlib                            # scripts/plot.py
  python3-jinja2                                # peft's save_pretrained writes a model card with it
  python3-venv python3-pip                      # .venv for the PyPI packages below
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
else
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
fi

# ---- Python packages from PyPI, into .venv ----
# One entry per importable module, "module:pip arguments"; an entry is installed, in this order, only when
# `import module` fails. The pins are a set tested on Debian's torch 1.13 (newer transformers and accelerate
# releases move to torch 2). peft goes in with --no-deps: Debian's torch calls itself
# 1.13.0a0+gitunknown, a pre-release below peft's torch>=1.13.0, and pip would fetch a PyPI torch (5 GB with
# its CUDA wheels) into .venv; transformers and accelerate, installed before it, bring its other dependencies.
PYTHON_PACKAGES=(
  "gguf:gguf"
  "tensorboard:tensorboard"
  "transformers:transformers==4.46.3 accelerate==1.0.1"
  "peft:--no-deps peft==0.13.2"
)
modules=("${PYTHON_PACKAGES[@]%%:*}")
venv=$root/.venv
if [ ! -x "$venv/bin/python3" ]; then
  if ! /usr/bin/python3 -m venv --system-site-packages "$venv" >/dev/null 2>&1; then
    echo "setup: warning: could not create $venv (python3-venv missing?); tests that need ${modules[*]} will skip"
    rm -rf "$venv"
    exit 0
  fi
fi
installed=() failed=()
for entry in "${PYTHON_PACKAGES[@]}"; do
  module=${entry%%:*}
  read -r -a args <<< "${entry#*:}"
  "$venv/bin/python3" -c "import $module" >/dev/null 2>&1 && continue
  if "$venv/bin/python3" -m pip install -q --disable-pip-version-check "${args[@]}" >/dev/null 2>&1 &&
     "$venv/bin/python3" -c "import $module" >/dev/null 2>&1; then
    installed+=("$module")
  else
    failed+=("$module")
  fi
done
if [ ${#installed[@]} -eq 0 ] && [ ${#failed[@]} -eq 0 ]; then
  echo "setup: python packages present in .venv: ${modules[*]}"
fi
[ ${#installed[@]} -eq 0 ] || echo "setup: installed into .venv: ${installed[*]}"
[ ${#failed[@]} -eq 0 ] ||
  echo "setup: warning: pip could not install ${failed[*]} into .venv (offline?); the tests that need them will skip"
