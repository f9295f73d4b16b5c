#!/usr/bin/env bash
# Peak RSS of PRIMAL vs STE-AdamW on the same ghost shape: dim 1024, 4 layers, ffn 2816 (50.6M ghost
# weights in attention + MLP), bytes tokenizer, batch 1 x 64 tokens so that activations (a few MB) do not
# hide the training state. Each method trains 3 steps; the ratio PRIMAL / STE is printed (target <= 0.25).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x build/trinity ] || { cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build -j "$(nproc)"; }
T=build/trinity
w=$(mktemp -d); trap 'rm -rf "$w"' EXIT
"$T" prepare text --tokenizer bytes --in /usr/share/common-licenses/GPL-3 -o "$w/train.h5" > /dev/null
cat > "$w/m.ini" <<INI
[model]
dim = 1024
n_layers = 4
n_heads = 8
ffn_dim = 2816
[data]
train = $w/train.h5
[train]
batch = 1
seq_len = 64
steps = 3
INI
peak() { /usr/bin/python3 -c "import json,sys; print([json.loads(l) for l in open(sys.argv[1])][-1]['peak_rss_bytes'])" "$1"; }
"$T" train "$w/m.ini" train.out_dir="$w/primal" optim.method=primal 2> "$w/primal.err" || { cat "$w/primal.err"; exit 1; }
"$T" train "$w/m.ini" train.out_dir="$w/ste" quant.grid=primal15 2> "$w/ste.err" || { cat "$w/ste.err"; exit 1; }
p=$(peak "$w/primal/log.jsonl"); s=$(peak "$w/ste/log.jsonl")
/usr/bin/python3 - "$p" "$s" <<'PY'
import json, sys
p, s = int(sys.argv[1]), int(sys.argv[2])
print(f"PRIMAL peak RSS {p / 2**20:8.1f} MiB")
print(f"STE    peak RSS {s / 2**20:8.1f} MiB")
print(f"ratio PRIMAL/STE {p / s:.3f} (target <= 0.25)")
print(json.dumps({"bench": "memory", "ghost_weights": 50593792, "primal_peak_rss": p, "ste_peak_rss": s,
                  "ratio": p / s}))
PY
