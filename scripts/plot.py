#!/usr/bin/python3
"""Draw a training run's curves from RUN_DIR/log.jsonl into a PNG (matplotlib, Debian's python3-matplotlib).

    scripts/plot.py RUN_DIR [-o OUT.png]        default OUT: RUN_DIR/curves.png

Panels: training and validation loss; the learning rate; and the method's own curves when the log has them:
PRIMAL's flip_rate and vote_rate (fractions of the ghost weights that flipped / voted at each step), STE's
grid_changed (fraction of sampled weights whose grid point moved since the last log) and its blend factor
lambda. A resumed run appends to the same log.jsonl; the last value logged for a step wins.
"""
import argparse
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")  # no display: write a file
import matplotlib.pyplot as plt  # noqa: E402


def read_log(path):
    rows = {}
    for line in open(path):
        line = line.strip()
        if not line:
            continue
        o = json.loads(line)
        if "step" in o:
            rows.setdefault(int(o["step"]), {}).update(o)
    return [rows[s] for s in sorted(rows)]


def series(rows, key):
    pts = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
    return [p[0] for p in pts], [p[1] for p in pts]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("-o", "--out", help="PNG path (default RUN_DIR/curves.png)")
    a = ap.parse_args()
    log = os.path.join(a.run_dir, "log.jsonl")
    if not os.path.exists(log):
        sys.exit(f"plot.py: {log} not found (is {a.run_dir} a trinity run directory?)")
    rows = read_log(log)
    if not any("loss" in r for r in rows):
        sys.exit(f"plot.py: {log} has no training steps yet")
    panels = [("loss", [("loss", "train"), ("val_loss", "validation")]), ("learning rate", [("lr", "lr")])]
    method = [(k, k) for k in ("flip_rate", "vote_rate", "grid_changed") if series(rows, k)[0]]
    if method:
        panels.append(("fraction of weights", method))
    if series(rows, "lambda")[0]:
        panels.append(("STE blend", [("lambda", "lambda")]))
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 2.4 * len(panels)), sharex=True)
    for ax, (title, keys) in zip(axes, panels):
        for key, label in keys:
            x, y = series(rows, key)
            if x:
                ax.plot(x, y, marker="o" if key == "val_loss" else None, ms=3, lw=1.2, label=label)
        ax.set_ylabel(title)
        if title == "fraction of weights" and all(v > 0 for k, _ in keys for v in series(rows, k)[1]):
            ax.set_yscale("log")  # PRIMAL flips ~1e-3 of the weights per step while ~0.1 vote: one axis for both
        ax.grid(alpha=0.3)
        if len(keys) > 1:
            ax.legend(loc="best", fontsize=8)
    axes[-1].set_xlabel("step")
    fig.suptitle(os.path.basename(os.path.normpath(a.run_dir)), fontsize=10)
    fig.tight_layout()
    out = a.out or os.path.join(a.run_dir, "curves.png")
    tmp = out + ".tmp.png"
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, out)  # atomic: a reader never sees half a PNG
    print(f"{out}: {len(rows)} steps, panels: {', '.join(t for t, _ in panels)}")


if __name__ == "__main__":
    main()
