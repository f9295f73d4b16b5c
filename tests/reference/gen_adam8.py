#!/usr/bin/python3
"""Write the 8-bit AdamW reference fixture adam8.h5 into the directory given as argv[1] (ctest: ${TN_FIXTURES}).

An independent numpy restatement of the scheme documented in optim/adamw8.h (blockwise absmax, dynamic
code tables, nearest code with v's floor, fp32 AdamW on the dequantized moments, requantization), all in
float32 with the C code's operation order, so that tests/unit/test_adam8.c can require the C update BIT FOR BIT.

Contents (float32 unless marked):
  /table_m [256], /mid_m [255], /table_v [256], /mid_v [255]   the code tables and their float midpoints
  /<case>/p [n], /<case>/m_codes, /v_codes (uint8 [n]), /m_absmax, /v_absmax [nb]   the state before
  /<case>/g [S, n], /<case>/step [S, 7] (lr, beta1, beta2, eps, wd, c1, c2: tn_adamw_step's fields)
  /<case>/p_out [S, n], m_codes_out, v_codes_out (uint8 [S, n]), m_absmax_out, v_absmax_out [S, nb]
      the state after each of the S consecutive steps
  root attributes: block (int64, 2048), generator.
Cases:
  one    n = 4·2048 + 777 (five blocks, the last partial), S = 1, t = 7, wd = 0.1. Blocks: 0 ordinary values
         with magnitudes over six decades; 1 the zero state (codes 0, absmax 0); 2 huge values (g ~ 1e15,
         v ~ 1e30); 3 tiny values (g ~ 1e-18, v ~ 1e-36, so g·g and v·c2 are subnormal); 4 (777 elements)
         ordinary values. Some gradients are exactly 0.
  fresh  n = 3000 (a full and a partial block) from the zero state, S = 3 steps (t = 1, 2, 3), wd = 0.

Deterministic (fixed seed); takes well under a second. Exits 77 when numpy or h5py is missing.
"""

import os
import sys
from fractions import Fraction

try:
    import numpy as np
    import h5py
except ImportError as e:  # ctest reports 77 as skipped; test_adam8 then skips its fixture part
    print(f"SKIPPED: gen_adam8.py needs python3-numpy and python3-h5py ({e})")
    sys.exit(77)

F = np.float32
BLOCK = 2048


# ---- the code tables -----------------------------------------------------------------------------------

def magnitude(bits, c):
    """(n + 9j) / (10^(k+1) n) for index c (1 <= c < 2^bits): e = floor(log2 c), n = 2^e, j = c - n + 1,
    k = bits - 1 - e; one float32 division of two integers exact in float32."""
    e = c.bit_length() - 1
    n = 1 << e
    j = c - n + 1
    k = bits - 1 - e
    num, den = n + 9 * j, 10 ** (k + 1) * n
    assert float(F(num)) == num and float(F(den)) == den
    return F(num) / F(den)


def table_v():
    return np.array([F(0)] + [magnitude(8, c) for c in range(1, 256)], dtype=np.float32)


def table_m():
    neg = [-magnitude(7, 127 - c) for c in range(0, 127)]
    pos = [magnitude(7, c - 128) for c in range(129, 256)]
    return np.array(neg + [F(0), magnitude(8, 1)] + pos, dtype=np.float32)


def mids(t):
    return ((t[:-1] + t[1:]) * F(0.5)).astype(np.float32)


TM, TV = table_m(), table_v()
MM, MV = mids(TM), mids(TV)
ZERO_M, ZERO_V = 127, 0
FLOORED = [0]  # v values raised from code 0 to code 1 (a diagnostic)


# ---- quantization and the update ------------------------------------------------------------------------

def quantize(x, t_mid, zero):
    """codes (uint8) and absmax of one block: the nearest entry of x / absmax, ties to the lower code; for v
    (the unsigned table) a positive value never takes code 0 but at least code 1."""
    a = F(np.max(np.abs(x))) if x.size else F(0)
    if a == 0:
        return np.full(x.shape, zero, dtype=np.uint8), F(0)
    u = (x / a).astype(np.float32)
    codes = np.searchsorted(t_mid, u, side="left")
    if t_mid is MV:
        floor = (x > 0) & (codes == 0)
        FLOORED[0] += int(np.sum(floor))
        codes = np.where(floor, 1, codes)
    return codes.astype(np.uint8), a


def dequantize(codes, a, table):
    return (table[codes.astype(np.int64)] * F(a) + F(0)).astype(np.float32)


def quantize_all(x, t_mid, zero):
    nb = (x.size + BLOCK - 1) // BLOCK
    codes = np.zeros(x.size, dtype=np.uint8)
    absmax = np.zeros(nb, dtype=np.float32)
    for b in range(nb):
        s = slice(b * BLOCK, min(x.size, (b + 1) * BLOCK))
        codes[s], absmax[b] = quantize(x[s], t_mid, zero)
    return codes, absmax


def adamw(p, g, m, v, hp):
    """tn_adamw_apply's float expressions, left to right, in float32."""
    lr, b1, b2, eps, wd, c1, c2 = (F(x) for x in hp)
    m = b1 * m + (F(1) - b1) * g
    v = b2 * v + (F(1) - b2) * g * g
    p = p - lr * ((m * c1) / (np.sqrt(v * c2) + eps) + wd * p)
    return p.astype(np.float32), m.astype(np.float32), v.astype(np.float32)


def step8(p, g, mc, ma, vc, va, hp):
    """One 8-bit AdamW step over all blocks; returns the new (p, mc, ma, vc, va)."""
    p, mc, ma, vc, va = p.copy(), mc.copy(), ma.copy(), vc.copy(), va.copy()
    for b in range(ma.size):
        s = slice(b * BLOCK, min(p.size, (b + 1) * BLOCK))
        m = dequantize(mc[s], ma[b], TM)
        v = dequantize(vc[s], va[b], TV)
        p[s], m, v = adamw(p[s], g[s], m, v, hp)
        mc[s], ma[b] = quantize(m, MM, ZERO_M)
        vc[s], va[b] = quantize(v, MV, ZERO_V)
    return p, mc, ma, vc, va


def step_constants(lr, b1, b2, eps, wd, t):
    b1, b2 = F(b1), F(b2)
    c1 = F(1) / (F(1) - np.power(b1, F(t)))
    c2 = F(1) / (F(1) - np.power(b2, F(t)))
    return np.array([lr, b1, b2, eps, wd, c1, c2], dtype=np.float32)


# ---- self-checks ---------------------------------------------------------------------------------------

def self_check():
    for t, mid, zero in ((TM, MM, ZERO_M), (TV, MV, ZERO_V)):
        assert t.dtype == np.float32 and t.size == 256 and mid.size == 255
        assert np.all(t[1:] > t[:-1]), "strictly ascending"
        assert np.all(mid > t[:-1]) and np.all(mid < t[1:]), "midpoints strictly between"
        assert t[zero] == 0 and t[-1] == 1
    assert TM[0] == -1 and TV[0] == 0 and TM[128] == F(1e-7) and TV[1] == F(1e-7) and TM[129] == F(1e-6)
    assert np.array_equal(-TM[:127][::-1], TM[129:]), "the signed table is symmetric but for the spare code"
    # every entry is the correctly rounded rational
    for c in range(1, 256):
        e = c.bit_length() - 1
        n, j, k = 1 << e, c - (1 << e) + 1, 7 - e
        exact = Fraction(n + 9 * j, 10 ** (k + 1) * n)
        f = Fraction(float(TV[c]))
        below, above = Fraction(float(np.nextafter(TV[c], F(0)))), Fraction(float(np.nextafter(TV[c], F(2))))
        assert abs(f - exact) <= abs(below - exact) and abs(f - exact) <= abs(above - exact)
    # the code is the nearest entry (exact rational distances to the two entries around u), except for a u
    # between the exact midpoint of two neighbours and its float32 rounding; on a float midpoint the lower code
    rng = np.random.default_rng(7)
    for t, mid, signed in ((TM, MM, True), (TV, MV, False)):
        sign = np.where(rng.random(3000) < 0.5, -1, 1) if signed else 1
        us = np.concatenate([rng.uniform(-1 if signed else 0, 1, 3000), sign * 10.0 ** rng.uniform(-9, 0, 3000),
                             mid, np.nextafter(mid, F(-2)), np.nextafter(mid, F(2)), t]).astype(np.float32)
        us = us[(us >= -1) & (us <= 1)] if signed else us[(us >= 0) & (us <= 1)]
        codes = np.searchsorted(mid, us, side="left")
        above = np.searchsorted(t, us, side="left")  # t[above - 1] < u <= t[above]
        for u, c, i in zip(us, codes, above):
            fu = Fraction(float(u))
            cand = [k for k in (i - 1, i) if 0 <= k < 256]
            d = {k: abs(fu - Fraction(float(t[k]))) for k in cand}
            best = min(d.values())
            if c in d and d[c] == best:
                continue
            assert len(cand) == 2 and c in cand, (u, c, i)
            lo = cand[0]
            em, fm = (Fraction(float(t[lo])) + Fraction(float(t[lo + 1]))) / 2, Fraction(float(mid[lo]))
            assert min(em, fm) <= fu <= max(em, fm) or fu == fm, (u, c, i)
        assert np.array_equal(np.searchsorted(mid, mid, side="left"), np.arange(255)), "ties: the lower code"
    # v's floor: a positive value takes at least code 1, zero keeps code 0; m has no floor
    c, a = quantize(np.array([1.0, 1e-9, 0.0, 1e-45], np.float32), MV, ZERO_V)
    assert list(c) == [255, 1, 0, 1] and a == 1
    c, a = quantize(np.array([1.0, 1e-9, 0.0, -1e-9], np.float32), MM, ZERO_M)
    assert list(c) == [255, ZERO_M, ZERO_M, ZERO_M]
    # a zero block quantizes to the code of 0; dequantized codes requantize to themselves
    assert np.all(quantize(np.zeros(5, np.float32), MM, ZERO_M)[0] == ZERO_M)
    x = (rng.standard_normal(2048) * 10.0 ** rng.uniform(-6, 0, 2048)).astype(np.float32)
    c, a = quantize(x, MM, ZERO_M)
    c2, a2 = quantize(dequantize(c, a, TM), MM, ZERO_M)
    assert np.array_equal(c, c2) and a == a2


# ---- the fixture ---------------------------------------------------------------------------------------

def spread(rng, n, lo, hi):
    """Normal values with magnitudes spread log-uniformly over 10^lo .. 10^hi."""
    return (rng.standard_normal(n) * 10.0 ** rng.uniform(lo, hi, n)).astype(np.float32)


def case_one(rng):
    n = 4 * BLOCK + 777
    p = (rng.standard_normal(n) * 0.5).astype(np.float32)
    g = spread(rng, n, -6, -1)
    m = spread(rng, n, -6, -1)
    v = (spread(rng, n, -6, -1) ** 2).astype(np.float32)
    blk = [slice(b * BLOCK, min(n, (b + 1) * BLOCK)) for b in range(5)]
    # block 2: huge values; block 3: tiny ones (subnormal g·g, v·c2)
    p[blk[2]] *= F(1e3)
    g[blk[2]] = spread(rng, BLOCK, 14, 15)
    m[blk[2]] = spread(rng, BLOCK, 13, 15)
    v[blk[2]] = (spread(rng, BLOCK, 14, 15) ** 2).astype(np.float32)
    g[blk[3]] = spread(rng, BLOCK, -19, -17)
    m[blk[3]] = spread(rng, BLOCK, -19, -17)
    v[blk[3]] = (spread(rng, BLOCK, -19, -17) ** 2).astype(np.float32)
    g[rng.choice(n, 50, replace=False)] = 0
    mc, ma = quantize_all(m, MM, ZERO_M)
    vc, va = quantize_all(v, MV, ZERO_V)
    mc[blk[1]], ma[1], vc[blk[1]], va[1] = 0, 0, 0, 0  # block 1: the zero-initialised state
    return dict(p=p, g=g[None, :], mc=mc, ma=ma, vc=vc, va=va,
                step=step_constants(1e-3, 0.9, 0.999, 1e-8, 0.1, 7)[None, :])


def case_fresh(rng):
    n = 3000
    nb = (n + BLOCK - 1) // BLOCK
    p = (rng.standard_normal(n) * 0.2).astype(np.float32)
    g = np.stack([spread(rng, n, -5, -1) for _ in range(3)])
    step = np.stack([step_constants(1e-2, 0.9, 0.95, 1e-8, 0.0, t) for t in (1, 2, 3)])
    return dict(p=p, g=g, mc=np.zeros(n, np.uint8), ma=np.zeros(nb, np.float32), vc=np.zeros(n, np.uint8),
                va=np.zeros(nb, np.float32), step=step)


def check_against_float64(c, out):
    """Sanity: the first step's p is fp64 AdamW on the dequantized state, to float32 rounding."""
    def deq_all(codes, absmax, table):
        return np.concatenate([dequantize(codes[b * BLOCK:(b + 1) * BLOCK], absmax[b], table)
                               for b in range(absmax.size)]).astype(np.float64)
    m, v = deq_all(c["mc"], c["ma"], TM), deq_all(c["vc"], c["va"], TV)
    lr, b1, b2, eps, wd, c1, c2 = (float(x) for x in c["step"][0])
    g, p = c["g"][0].astype(np.float64), c["p"].astype(np.float64)
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    p = p - lr * ((m * c1) / (np.sqrt(v * c2) + eps) + wd * p)
    d = np.abs(out[0][0].astype(np.float64) - p) / np.maximum(np.abs(p), 1e-30)
    assert np.max(d) < 1e-5, np.max(d)


def write_case(f, name, c):
    S = c["g"].shape[0]
    state = (c["p"], c["mc"], c["ma"], c["vc"], c["va"])
    outs = [[] for _ in range(5)]
    FLOORED[0] = 0
    for s in range(S):
        state = step8(state[0], c["g"][s], state[1], state[2], state[3], state[4], c["step"][s])
        for k in range(5):
            outs[k].append(state[k])
    check_against_float64(c, outs)
    grp = f.create_group(name)
    for key, val in (("p", c["p"]), ("g", c["g"]), ("m_codes", c["mc"]), ("m_absmax", c["ma"]),
                     ("v_codes", c["vc"]), ("v_absmax", c["va"]), ("step", c["step"])):
        grp.create_dataset(key, data=val)
    for k, key in enumerate(("p_out", "m_codes_out", "m_absmax_out", "v_codes_out", "v_absmax_out")):
        grp.create_dataset(key, data=np.stack(outs[k]))
    changed = np.mean(outs[1][-1] != c["mc"])
    print(f"adam8.h5 /{name}: n = {c['p'].size}, {S} step(s), {100 * changed:.1f}% of the m codes changed, "
          f"{FLOORED[0]} v codes raised to 1 by the floor, new m absmax {outs[2][-1]}")


def main():
    if len(sys.argv) != 2:
        print("usage: gen_adam8.py FIXTURES_DIR", file=sys.stderr)
        return 2
    self_check()
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "adam8.h5")
    tmp = path + ".tmp"
    rng = np.random.default_rng(20220801)
    with h5py.File(tmp, "w") as f:
        f.attrs["generator"] = "tests/reference/gen_adam8.py"
        f.attrs["block"] = np.int64(BLOCK)
        for key, val in (("table_m", TM), ("mid_m", MM), ("table_v", TV), ("mid_v", MV)):
            f.create_dataset(key, data=val)
        write_case(f, "one", case_one(rng))
        write_case(f, "fresh", case_fresh(rng))
    os.replace(tmp, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
