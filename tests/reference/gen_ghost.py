#!/usr/bin/python3
"""Write ghost_linear.h5 into the directory given as argv[1] (ctest: ${TN_FIXTURES}), the reference for
tests/unit/test_primal_backward.c: one PRIMAL ghost linear layer (primal15 grid), forward and backward by
PyTorch autograd (ghost_ref.py), once with a per-tensor scale and once with per-row scales (some negative).

Layout (all float32 unless noted):
  root attrs   grid_name = "primal15", z (float64)
  /grid        [15]
  /tensor, /row   one group per scale layout, each with
     x [N, in], dy [N, out], idx uint8 [out, in], scale [1] or [out],
     W [out, in] = scale * grid[idx], y [N, out] = x W^T,
     G [out, in] = dL/dW, dscale = dL/dscale (shape of scale), dx [N, in] = dL/dx   (L = sum(y * dy)),
     vote_before int8 [out, in] (random, with saturated entries), vote_after int8 [out, in],
     attrs: per_row (int64), thr (float64: mean|G| + z std|G|), n_voters (int64)
Sizes are odd (N 37, in 67, out 29) so no SIMD tail is skipped. Deterministic. Exits 77 (skipped) when torch,
numpy or h5py is missing.
"""

import os
import sys

try:
    import numpy as np
    import torch
    import h5py
except ImportError as e:
    print(f"SKIPPED: gen_ghost.py needs python3-torch, python3-h5py, python3-numpy ({e})")
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ghost_ref as ref  # noqa: E402

N, IN, OUT = 37, 67, 29
Z = 1.0


def main():
    if len(sys.argv) != 2:
        print("usage: gen_ghost.py FIXTURES_DIR", file=sys.stderr)
        return 2
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    ref._self_check()
    grid = ref.grid_values("primal15")
    gen = torch.Generator().manual_seed(4242)
    rng = np.random.default_rng(4242)
    tmp = os.path.join(out_dir, "ghost_linear.h5.tmp")
    with h5py.File(tmp, "w") as f:
        f.attrs["grid_name"] = "primal15"
        f.attrs["z"] = np.float64(Z)
        f["grid"] = grid
        for name, per_row in (("tensor", False), ("row", True)):
            x = torch.randn(N, IN, generator=gen).numpy().astype(np.float32)
            dy = (0.1 * torch.randn(N, OUT, generator=gen)).numpy().astype(np.float32)
            # indices spread over the whole grid (not just around zero) so every value is exercised
            idx = rng.integers(0, len(grid), size=(OUT, IN)).astype(np.uint8)
            if per_row:
                scale = rng.normal(0.0, 0.5, size=OUT).astype(np.float32)
                scale[3] = -abs(scale[3]) - 0.1  # at least one negative row, so sign(scale) matters
            else:
                scale = np.array([0.8], dtype=np.float32)
            vote_before = rng.integers(-127, 128, size=(OUT, IN)).astype(np.int8)
            vote_before[0, :5] = 127
            vote_before[1, :5] = -127
            r = ref.ghost_linear(x, dy, idx, grid, scale, per_row)
            vote_after, thr, n_voters = ref.votes(r["G"], scale, per_row, vote_before, Z)
            g = f.create_group(name)
            for k, v in dict(x=x, dy=dy, idx=idx, scale=scale, vote_before=vote_before, vote_after=vote_after,
                             **r).items():
                g[k] = v
            g.attrs["per_row"] = np.int64(per_row)
            g.attrs["thr"] = np.float64(thr)
            g.attrs["n_voters"] = np.int64(n_voters)
    os.replace(tmp, os.path.join(out_dir, "ghost_linear.h5"))
    print(f"wrote {os.path.join(out_dir, 'ghost_linear.h5')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
