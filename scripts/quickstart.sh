#!/usr/bin/env bash
# The whole job, end to end, on text every Debian machine has (the license texts in
# /usr/share/common-licenses): install what is missing, build, prepare a byte-level shard, pre-train a
# small ghost model with PRIMAL, export it to a .trin file, and generate text with the bundled runner.
# A few minutes on 2 cores. Everything lands in runs/quickstart/.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

./scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DTN_CUDA_EMU=OFF > /dev/null
cmake --build build -j "$jobs"
T=build/trinity
out=runs/quickstart
L=/usr/share/common-licenses
mkdir -p "$out"

echo "== prepare: byte-level shards from $L"
"$T" prepare text --tokenizer bytes --doc-split blank-line \
  --in "$L/GPL-3" "$L/GPL-2" "$L/Apache-2.0" "$L/MPL-2.0" "$L/Artistic" "$L/GFDL-1.3" "$L/LGPL-3" "$L/MPL-1.1" \
  -o "$out/train.h5"
"$T" prepare text --tokenizer bytes --doc-split blank-line --in "$L/LGPL-2.1" -o "$out/val.h5"

echo "== train: configs/quickstart.ini (PRIMAL ghost model)"
"$T" train configs/quickstart.ini

if /usr/bin/python3 -c "import matplotlib" 2>/dev/null; then
  echo "== plot: $out/curves.png (loss, learning rate, PRIMAL flip and vote rates)"
  /usr/bin/python3 scripts/plot.py "$out"
fi

echo "== export: $out/model.trin"
"$T" export "$out/latest.h5" -o "$out/model.trin"
"$T" info "$out/model.trin" > "$out/model.info.txt"
sed -n 1,12p "$out/model.info.txt"

echo "== eval: the exported model on the held-out license"
"$T" eval "$out/model.trin" --data "$out/val.h5" --seq-len 128

echo "== run"
"$T" run "$out/model.trin" -p "This License applies to" -n 120 --temp 0.8 --top-k 40 --seed 1
echo
