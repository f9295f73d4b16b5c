#!/usr/bin/env bash
# Training memory of a ghost model: PRIMAL vs STE-AdamW on the same shape, batch and data.
# Trains a byte-level Llama (default dim 1024, 4 layers, ffn 2816: 51.4M weights in attention + MLP) for a
# few steps twice, with `[optim] method = primal` (each of those weights is a uint8 grid index + an int8
# vote, 2 bytes) and with STE-AdamW on the same grid (`[quant] grid = primal15`: fp32 shadow weight,
# gradient, two AdamW moments, the materialised snapped weight, index bytes: about 22 bytes), reads
# `peak_rss_bytes` from each run's log.jsonl, and prints both and the ratio PRIMAL / STE (target <= 0.25);
# a third run with packed 4-bit indices (1.5 bytes per ghost weight) is printed alongside.
# batch x seq_len is kept tiny (1 x 32) on purpose: activations are the same for both methods and would
# otherwise dominate both numbers; the benchmark is about the per-weight training state.
# Usage: scripts/bench-memory.sh [--dim D] [--layers L] [--ffn F] [--batch B] [--seq-len T] [--steps S]
#                                [--threads N] [--build DIR] [--keep DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
DIM=1024; LAYERS=4; FFN=2816; B=1; T=32; STEPS=3; THREADS=2; BUILD=build; KEEP=""
while [ $# -gt 0 ]; do
  case $1 in
    --dim) DIM=$2; shift 2;; --layers) LAYERS=$2; shift 2;; --ffn) FFN=$2; shift 2;;
    --batch) B=$2; shift 2;; --seq-len) T=$2; shift 2;; --steps) STEPS=$2; shift 2;;
    --threads) THREADS=$2; shift 2;; --build) BUILD=$2; shift 2;; --keep) KEEP=$2; shift 2;;
    *) echo "usage: $0 [--dim D] [--layers L] [--ffn F] [--batch B] [--seq-len T] [--steps S] [--threads N] [--build DIR] [--keep DIR]"; exit 2;;
  esac
done
TRINITY=${TN_TRINITY:-$BUILD/trinity}
PY=${TN_PYTHON:-/usr/bin/python3}
if [ ! -x "$TRINITY" ]; then
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD" -j "$(nproc)" --target trinity
fi
# Sleeping, not spinning, OpenMP workers: the machine may be shared, and RSS does not depend on it.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

if [ -n "$KEEP" ]; then w=$KEEP; mkdir -p "$w"; else w=$(mktemp -d); trap 'rm -rf "$w"' EXIT; fi
# Any text will do; the license texts exist on every Debian machine.
texts=(/usr/share/common-licenses/GPL-3 /usr/share/common-licenses/Apache-2.0)
for f in "${texts[@]}"; do [ -r "$f" ] || { echo "bench-memory: $f missing"; exit 1; }; done
"$TRINITY" prepare text --tokenizer bytes --in "${texts[@]}" -o "$w/train.h5" >/dev/null

heads=$((DIM / 128)); [ "$heads" -ge 1 ] || heads=1
cat > "$w/base.ini" <<INI
[model]
dim = $DIM
n_layers = $LAYERS
n_heads = $heads
ffn_dim = $FFN
[data]
train = $w/train.h5
[train]
batch = $B
seq_len = $T
steps = $STEPS
threads = $THREADS
INI

run() {  # run NAME OVERRIDES...
  local name=$1; shift
  "$TRINITY" train "$w/base.ini" "train.out_dir=$w/$name" "$@" 2> "$w/$name.err" \
    || { cat "$w/$name.err"; echo "bench-memory: the $name run failed"; exit 1; }
}
run primal optim.method=primal
run primal_packed optim.method=primal primal.packed_indices=true
run ste quant.grid=primal15

"$PY" - "$w/primal/log.jsonl" "$w/ste/log.jsonl" "$w/primal_packed/log.jsonl" "$DIM" "$LAYERS" "$FFN" "$B" "$T" <<'PY'
import json, sys
def load(p):
    rows = [json.loads(l) for l in open(p)]
    rss = [r["peak_rss_bytes"] for r in rows if "peak_rss_bytes" in r]
    mem = next((r["memory"] for r in rows if "memory" in r), None)
    return rss[-1], mem
(p, mem), (s, _), (pk, memk) = load(sys.argv[1]), load(sys.argv[2]), load(sys.argv[3])
dim, layers, ffn, b, t = map(int, sys.argv[4:9])
M = 2 ** 20
print(f"shape: dim {dim}, {layers} layers, ffn {ffn}, bytes vocab; {mem['ghost_weights'] / 1e6:.1f}M ghost weights; "
      f"batch {b} x seq {t}")
print(f"PRIMAL state: idx {mem['ghost_idx_bytes'] / M:.1f} MiB + votes {mem['ghost_vote_bytes'] / M:.1f} MiB "
      f"({mem['ghost_bytes_per_weight']:g} B/weight), float state {mem['float_state_bytes'] / M:.1f} MiB, "
      f"scratch {mem['scratch_bytes'] / M:.1f} MiB, activations {mem['activation_bytes'] / M:.1f} MiB")
print(f"peak RSS  PRIMAL {p / M:8.1f} MiB")
print(f"peak RSS  STE    {s / M:8.1f} MiB   (fp32 shadow + grad + AdamW m, v + snapped copy)")
print(f"peak RSS  PRIMAL, packed 4-bit indices ({memk['ghost_bytes_per_weight']:g} B/weight) {pk / M:.1f} MiB")
print(f"ratio PRIMAL / STE = {p / s:.3f}   (target <= 0.25: {'met' if p / s <= 0.25 else 'NOT met'}); packed: {pk / s:.3f}")
print(json.dumps({"bench": "memory", "ghost_weights": mem["ghost_weights"], "primal_peak_rss_bytes": p,
                  "ste_peak_rss_bytes": s, "ratio": p / s, "primal_packed_peak_rss_bytes": pk, "ratio_packed": pk / s}))
PY
