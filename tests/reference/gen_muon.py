#!/usr/bin/python3
"""Write the Muon and Grokfast reference fixture muon_grokfast.h5 into the directory given as argv[1]
(ctest: ${TN_FIXTURES}), for tests/unit/test_muon.c.

The updates are restated in PyTorch after the public reference implementations (not copied):
  Muon      github.com/KellerJordan/Muon muon.py: muon_update (momentum.lerp_(g, 1 - beta), the Nesterov
            g.lerp_(momentum, beta)), zeropower_via_newtonschulz5 (quintic coefficients (3.4445, -4.7750,
            2.0315), X / (||X||_F + 1e-7), the transpose when rows > cols), the update scale
            max(1, rows / cols) ** 0.5, and the step p *= 1 - lr * wd; p -= lr * update.
  Grokfast  github.com/ironjr/grokfast grokfast.py gradfilter_ema: the EMA starts at the first gradient,
            ema = ema * alpha + g * (1 - alpha), g = g + ema * lambda.
Everything is computed in float64 from float32 inputs (the reference itself iterates in bf16, which would be
far from any fp32 implementation), then rounded to float32, so a mismatch is the C code's float error.

Contents (float32 unless marked):
  /muon/<case>/p0 [R, C], /g [S, R, C]                                  initial weights, S gradients
  /muon/<case>/momentum [S, R, C], /update [S, R, C], /p [S, R, C]      after each step: the momentum buffer,
      the scaled orthogonalised update s·U' (before lr), the weights
  /muon/<case> attributes: beta, lr, wd (float64), nesterov, ns_steps (int64)
  /grokfast/<case>/g [S, n]; /g_out [S, n], /ema [S, n] after each step; attributes alpha, lambda (float64)
Cases: muon wide (24 x 40, Nesterov, 5 steps, wd 0.1), tall (56 x 20, Nesterov, 5 steps, wd 0),
square (32 x 32, plain momentum, 2 steps, wd 0.01), each S = 3 optimizer steps; grokfast paper
(alpha 0.98, lambda 2, n = 1000) and fast (alpha 0.5, lambda 0.3, n = 777), S = 4.

Deterministic (fixed seed), well under a second. Exits 77 when torch or h5py is missing.
"""

import os
import sys

try:
    import h5py
    import numpy as np
    import torch
except ImportError as e:  # ctest reports 77 as skipped; test_muon then skips its fixture part
    print(f"SKIPPED: gen_muon.py needs torch, numpy and h5py ({e})")
    sys.exit(77)

S = 3
NS = (3.4445, -4.7750, 2.0315)


def orthogonalize(G, steps):
    a, b, c = NS
    X = G.clone()
    tall = G.size(-2) > G.size(-1)
    if tall:
        X = X.mT
    X = X / (X.norm() + 1e-7)
    for _ in range(steps):
        A = X @ X.mT
        B = b * A + c * A @ A
        X = a * X + B @ X
    return X.mT if tall else X


def muon_case(f, name, rows, cols, nesterov, ns_steps, beta, lr, wd, gen):
    p0 = (torch.randn(rows, cols, generator=gen, dtype=torch.float64) * 0.05).float()
    # gradients with a common slow component, so the momentum matters
    slow = torch.randn(rows, cols, generator=gen, dtype=torch.float64)
    gs = [(slow + 0.7 * torch.randn(rows, cols, generator=gen, dtype=torch.float64)).float() * 1e-2 for _ in range(S)]
    p, buf = p0.double(), torch.zeros(rows, cols, dtype=torch.float64)
    out = {"momentum": [], "update": [], "p": []}
    for g32 in gs:
        g = g32.double()
        buf.lerp_(g, 1 - beta)
        u = g.lerp(buf, beta) if nesterov else buf.clone()
        u = orthogonalize(u, ns_steps) * max(1, rows / cols) ** 0.5
        p.mul_(1 - lr * wd)
        p.add_(u, alpha=-lr)
        out["momentum"].append(buf.clone())
        out["update"].append(u)
        out["p"].append(p.clone())
    grp = f.create_group(f"muon/{name}")
    grp["p0"] = p0.numpy()
    grp["g"] = torch.stack(gs).numpy()
    for k, v in out.items():
        grp[k] = torch.stack(v).float().numpy()
    grp.attrs["beta"], grp.attrs["lr"], grp.attrs["wd"] = float(beta), float(lr), float(wd)
    grp.attrs["nesterov"], grp.attrs["ns_steps"] = np.int64(nesterov), np.int64(ns_steps)


def grokfast_case(f, name, n, alpha, lamb, gen):
    steps = 4
    gs = [torch.randn(n, generator=gen, dtype=torch.float64).float() for _ in range(steps)]
    ema = None
    g_out, emas = [], []
    for g32 in gs:
        g = g32.double()
        ema = g.clone() if ema is None else ema  # gradfilter_ema's first call starts at the gradient
        ema = ema * alpha + g * (1 - alpha)
        g_out.append(g + ema * lamb)
        emas.append(ema.clone())
    grp = f.create_group(f"grokfast/{name}")
    grp["g"] = torch.stack(gs).numpy()
    grp["g_out"] = torch.stack(g_out).float().numpy()
    grp["ema"] = torch.stack(emas).float().numpy()
    grp.attrs["alpha"], grp.attrs["lambda"] = float(alpha), float(lamb)


def self_check():
    """The Newton-Schulz result has singular values in the band the reference documents (roughly 0.5..1.5)
    and the same singular vectors as its input."""
    gen = torch.Generator().manual_seed(7)
    G = torch.randn(40, 24, generator=gen, dtype=torch.float64)
    O = orthogonalize(G, 5)
    s = torch.linalg.svdvals(O)
    assert s.min() > 0.5 and s.max() < 1.5, s
    U, _, Vh = torch.linalg.svd(G, full_matrices=False)
    core = U.mT @ O @ Vh.mT  # diagonal when the singular vectors are kept
    assert (core - torch.diag(torch.diagonal(core))).abs().max() < 1e-9


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: gen_muon.py FIXTURES_DIR")
    self_check()
    os.makedirs(sys.argv[1], exist_ok=True)
    path = os.path.join(sys.argv[1], "muon_grokfast.h5")
    gen = torch.Generator().manual_seed(1234)
    with h5py.File(path + ".tmp", "w") as f:
        f.attrs["generator"] = "tests/reference/gen_muon.py"
        muon_case(f, "wide", 24, 40, True, 5, 0.95, 0.02, 0.1, gen)
        muon_case(f, "tall", 56, 20, True, 5, 0.95, 0.05, 0.0, gen)
        muon_case(f, "square", 32, 32, False, 2, 0.9, 0.02, 0.01, gen)
        grokfast_case(f, "paper", 1000, 0.98, 2.0, gen)
        grokfast_case(f, "fast", 777, 0.5, 0.3, gen)
    os.replace(path + ".tmp", path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
