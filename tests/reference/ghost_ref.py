#!/usr/bin/python3
"""PyTorch reference for a PRIMAL ghost linear layer (optim/primal.h, docs/QUANT.md).

A ghost layer stores grid indices and a scale; its weight is materialised as

    W = scale * grid[idx]          scale: a scalar (per tensor) or [out, 1] (per output row)
    y = x @ W.T                    x: [N, in], W: [out, in], y: [N, out]

With upstream gradient dy = dL/dy (L = sum(y * dy)), autograd gives
    G      = dL/dW     = dy.T @ x                       [out, in]
    dscale = dL/dscale = sum(G * grid[idx])             over everything, or over each row
    dx     = dL/dx     = dy @ W                         [N, in]
and the vote of the rule (statistics over the whole tensor, std Bessel-corrected like torch.std()):
    thr  = mean(|G|) + z * std(|G|)
    vote = clamp(vote - sign(G * sign(scale)) * (|G| > thr), -127, 127)

Grids are built the way quant/grid.c builds them: float32 1/p (numpy float32 division is correctly rounded,
so the values are bit-identical to the C ones), sorted ascending.

The computation runs in float64 from float32 inputs and is rounded to float32 at the end, so the fixture
values are exact up to that rounding. `python3 ghost_ref.py` runs the self-checks.
"""

import numpy as np
import torch


def _recip(ps):
    return [np.float32(1.0) / np.float32(p) for p in ps]


def grid_values(name):
    """The built-in grids of quant/grid.h as sorted float32 arrays."""
    if name == "ternary":
        mags = [np.float32(1.0)]
    elif name == "prime7":
        mags = _recip([2, 3, 5])
    elif name == "primal15":
        mags = _recip([1, 2, 3, 5, 7, 11, 13])
    elif name == "primal25":
        mags = _recip([1, 2, 3, 5, 7, 11, 13, 4, 6, 8, 12]) + [np.float32(2.0) / np.float32(3.0)]
    elif name == "prime81":
        primes = [p for p in range(2, 152) if all(p % d for d in range(2, int(p ** 0.5) + 1))]
        assert len(primes) == 36
        mags = _recip(primes) + [np.float32(v) for v in (1.0, 1.5, 2.0, 3.0)]
    else:
        raise ValueError(name)
    vals = [np.float32(0.0)] + list(mags) + [-m for m in mags]
    out = np.array(sorted(vals), dtype=np.float32)
    assert len(np.unique(out)) == len(out)
    return out


def ghost_linear(x, dy, idx, grid, scale, per_row):
    """Forward and backward of y = x @ (scale * grid[idx]).T in float64 autograd.

    x [N, in], dy [N, out] float32; idx [out, in] uint8; grid float32; scale float32 [1] or [out].
    Returns float32 numpy arrays W, y, G, dscale (shape of scale), dx."""
    lut = torch.tensor(grid, dtype=torch.float64)
    ix = torch.tensor(idx.astype(np.int64))
    s = torch.tensor(scale.astype(np.float64))
    s = (s.reshape(-1, 1) if per_row else s.reshape(())).clone().requires_grad_(True)
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    W = lut[ix] * s
    W.retain_grad()
    y = xt @ W.T
    loss = (y * torch.tensor(dy, dtype=torch.float64)).sum()
    loss.backward()
    f32 = lambda t: t.detach().numpy().astype(np.float32)  # noqa: E731
    return dict(W=f32(W), y=f32(y), G=f32(W.grad), dscale=f32(s.grad).reshape(scale.shape), dx=f32(xt.grad))


def votes(G, scale, per_row, vote_before, z):
    """The vote rule on float32 G, statistics in float64. Returns (vote_after int8, thr float, n_voters)."""
    g = G.astype(np.float64)
    a = np.abs(g)
    thr = a.mean() + z * a.std(ddof=1)
    s = scale.astype(np.float64).reshape(-1, 1) if per_row else np.float64(scale.reshape(()))
    d = -np.sign(g * np.sign(s)) * (a > thr)
    after = np.clip(vote_before.astype(np.int64) + d.astype(np.int64), -127, 127).astype(np.int8)
    return after, float(thr), int(np.count_nonzero(d))


def _self_check():
    gen = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    g15 = grid_values("primal15")
    assert len(g15) == 15 and g15[7] == 0 and g15[14] == 1 and g15[13] == np.float32(0.5)
    assert [len(grid_values(n)) for n in ("ternary", "prime7", "prime81", "primal15", "primal25")] == [3, 7, 81, 15, 25]
    assert set(grid_values("primal15")) <= set(grid_values("primal25"))
    N, nin, nout = 5, 7, 3
    x = torch.randn(N, nin, generator=gen).numpy().astype(np.float32)
    dy = torch.randn(N, nout, generator=gen).numpy().astype(np.float32)
    idx = rng.integers(0, 15, size=(nout, nin)).astype(np.uint8)
    for per_row in (False, True):
        scale = (rng.normal(size=nout) if per_row else np.array([0.7])).astype(np.float32)
        r = ghost_linear(x, dy, idx, g15, scale, per_row)
        # closed forms
        W = (g15[idx].astype(np.float64) * (scale.reshape(-1, 1) if per_row else scale[0]))
        G = dy.astype(np.float64).T @ x.astype(np.float64)
        assert np.allclose(r["W"], W, rtol=1e-7, atol=0)
        assert np.allclose(r["G"], G, rtol=1e-6, atol=1e-7)
        assert np.allclose(r["dx"], dy.astype(np.float64) @ W, rtol=1e-6, atol=1e-7)
        ds = (G * g15[idx]).sum(axis=1) if per_row else np.array([(G * g15[idx]).sum()])
        assert np.allclose(r["dscale"], ds, rtol=1e-6, atol=1e-7)
        # dscale by central differences of L(scale) = sum(x @ (scale*grid[idx]).T * dy)
        h = 1e-3
        for k in range(len(scale)):
            def L(sv):
                Wk = g15[idx].astype(np.float64) * (sv.reshape(-1, 1) if per_row else sv[0])
                return float(((x.astype(np.float64) @ Wk.T) * dy).sum())
            sp, sm = scale.astype(np.float64).copy(), scale.astype(np.float64).copy()
            sp[k] += h
            sm[k] -= h
            fd = (L(sp) - L(sm)) / (2 * h)
            assert abs(fd - r["dscale"][k]) <= 1e-5 * max(1.0, abs(fd)), (fd, r["dscale"][k])
    # vote direction: G < 0 with scale > 0 asks for a larger value (+1); a negative scale flips it
    G = np.array([[-3.0, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]], dtype=np.float32)
    v, thr, n = votes(G, np.array([1.0], np.float32), False, np.zeros_like(G, np.int8), 1.0)
    assert v[0, 0] == 1 and n == 1 and np.all(v[0, 1:] == 0)
    v, _, _ = votes(G, np.array([-1.0], np.float32), False, np.full(G.shape, -127, np.int8), 1.0)
    assert v[0, 0] == -127  # saturates, never -128
    print("ghost_ref self-checks passed")


if __name__ == "__main__":
    _self_check()
