#!/usr/bin/python3
"""Write the knowledge-distillation reference fixture kd.h5 into the directory given as argv[1] (ctest:
${TN_FIXTURES}), for tests/unit/test_kd.c (kernels/cpu/kd.h tn_op_kd, tn_op_hidden_mse).

Groups /tau1 and /tau2_5: the KL term of the distillation loss at temperature tau,
    loss = alpha * tau^2 / n_counted * sum over counted rows n of KL(p_t,n || p_s,n),  p = softmax(logits / tau),
computed with torch.nn.functional (log_softmax, kl_div with log_target) in float64 from the float32 logits,
and its gradient with respect to the student logits by autograd. Six rows of V = 1031 logits:
    0  student N(0, 2^2), teacher N(0, 2^2) independent                  KL 3.8 (tau 1), 0.66 (tau 2.5)
    1  the same kind, masked out (its KL is still stored; its gradient is 0)
    2  large magnitudes: student 1000 + N(0, 20^2), teacher -500 + N(0, 20^2)   KL 95, 33 (a naive exp overflows)
    3  teacher = student + N(0, 0.3^2)                                     KL 0.039, 0.0068
    4  teacher = 3 * student (sharper)                                     KL 1.5, 0.61
    5  masked out, student = teacher                                       KL 0
Group /mse: the hidden-state MSE, sum = sum over counted rows of sum_d (xs - xt)^2 (float64), and the
gradient of weight * sum / (n_counted * D) with respect to xs by autograd.

Contents per KL group: attributes tau, alpha, loss (float64), n_counted (int64); datasets s_logits, t_logits
float32 [N, V], mask uint8 [N], kl float32 [N] (every row), grad float32 [N, V]. Group /mse: attributes
weight, sum, loss (float64), n_counted (int64); datasets xs, xt float32 [N, D], mask uint8 [N], dx float32 [N, D].
Deterministic (fixed seeds); exits 77 when torch / h5py / numpy are missing.
"""

import os
import sys
import time

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
    import h5py
except ImportError as e:  # ctest reports 77 as skipped; the test that needs this fixture then skips too
    print(f"SKIPPED: gen_kd.py needs python3-torch, python3-h5py, python3-numpy ({e})")
    sys.exit(77)

N, V = 6, 1031
MASK = [1, 0, 1, 1, 1, 0]
ALPHA = 0.7
TAUS = [("tau1", 1.0), ("tau2_5", 2.5)]
MSE_N, MSE_D, MSE_WEIGHT = 5, 96, 0.25
MSE_MASK = [1, 1, 0, 1, 0]


def make_logits(gen):
    """float32 student and teacher logits [N, V], rows as in the module docstring."""
    s = torch.empty(N, V, dtype=torch.float32)
    t = torch.empty(N, V, dtype=torch.float32)
    r = lambda: torch.randn(V, generator=gen, dtype=torch.float32)  # noqa: E731
    s[0], t[0] = 2 * r(), 2 * r()
    s[1], t[1] = 2 * r(), 2 * r()
    s[2], t[2] = 1000 + 20 * r(), -500 + 20 * r()
    s[3] = 2 * r()
    t[3] = s[3] + 0.3 * r()
    s[4] = 1.5 * r()
    t[4] = 3 * s[4]
    s[5] = 2 * r()
    t[5] = s[5]
    return s, t


def kd_loss(s, t, mask, tau, alpha):
    """(per-row KL [N], loss) in float64; s requires grad. KL(p_t || p_s) = sum p_t (log p_t - log p_s)."""
    log_ps = F.log_softmax(s / tau, dim=-1)
    log_pt = F.log_softmax(t / tau, dim=-1)
    kl = F.kl_div(log_ps, log_pt, reduction="none", log_target=True).sum(-1)
    n_counted = int(mask.sum())
    loss = alpha * tau * tau / n_counted * (kl * mask).sum()
    return kl, loss


def self_check(s, t, mask, tau, alpha, kl, grad):
    """The explicit formula and the analytic gradient g tau (p_s - p_t) agree with kl_div and autograd."""
    ps = torch.softmax(s / tau, -1)
    pt = torch.softmax(t / tau, -1)
    kl2 = (pt * (torch.log_softmax(t / tau, -1) - torch.log_softmax(s / tau, -1))).sum(-1)
    g = alpha / float(mask.sum())
    grad2 = g * tau * (ps - pt) * mask[:, None]
    e_kl = float((kl2 - kl).abs().max() / kl.abs().max())
    e_grad = float((grad2 - grad).abs().max() / grad.abs().max())
    assert e_kl < 1e-12 and e_grad < 1e-12, (e_kl, e_grad)
    assert float(kl.min()) >= -1e-15
    return e_kl, e_grad


def write_kd(f, name, tau, s32, t32, mask):
    s = s32.double().requires_grad_(True)
    t = t32.double()
    m = mask.double()
    kl, loss = kd_loss(s, t, m, tau, ALPHA)
    loss.backward()
    grad = s.grad.detach()
    e_kl, e_grad = self_check(s.detach(), t, m, tau, ALPHA, kl.detach(), grad)
    grp = f.create_group(name)
    grp.attrs["tau"] = np.float64(tau)
    grp.attrs["alpha"] = np.float64(ALPHA)
    grp.attrs["n_counted"] = np.int64(int(mask.sum()))
    grp.create_dataset("s_logits", data=s32.numpy())
    grp.create_dataset("t_logits", data=t32.numpy())
    grp.create_dataset("mask", data=mask.numpy().astype(np.uint8))
    grp.create_dataset("kl", data=kl.detach().numpy().astype(np.float32))
    grp.attrs["loss"] = np.float64(float(loss))
    grp.create_dataset("grad", data=grad.numpy().astype(np.float32))
    kls = ", ".join(f"{v:.3g}" for v in kl.detach().tolist())
    print(f"kd.h5 /{name}: tau {tau}, loss {float(loss):.6g}, KL per row [{kls}]; "
          f"self-check: explicit formula {e_kl:.1e}, analytic gradient {e_grad:.1e}")


def write_mse(f, gen):
    xs32 = torch.randn(MSE_N, MSE_D, generator=gen, dtype=torch.float32)
    xt32 = xs32 + 0.5 * torch.randn(MSE_N, MSE_D, generator=gen, dtype=torch.float32)
    mask = torch.tensor(MSE_MASK, dtype=torch.uint8)
    m = mask.double()
    n_counted = int(mask.sum())
    xs = xs32.double().requires_grad_(True)
    d = xs - xt32.double()
    total = ((d * d).sum(-1) * m).sum()
    loss = MSE_WEIGHT * total / (n_counted * MSE_D)
    loss.backward()
    # self-check: the masked mean equals F.mse_loss over the counted rows
    keep = mask.bool()
    ref = MSE_WEIGHT * F.mse_loss(xs.detach()[keep], xt32.double()[keep], reduction="mean")
    assert abs(float(ref) - float(loss)) <= 1e-14 * abs(float(loss)), (float(ref), float(loss))
    grp = f.create_group("mse")
    grp.attrs["weight"] = np.float64(MSE_WEIGHT)
    grp.attrs["n_counted"] = np.int64(n_counted)
    grp.create_dataset("xs", data=xs32.numpy())
    grp.create_dataset("xt", data=xt32.numpy())
    grp.create_dataset("mask", data=mask.numpy())
    grp.attrs["sum"] = np.float64(float(total))
    grp.attrs["loss"] = np.float64(float(loss))
    grp.create_dataset("dx", data=xs.grad.numpy().astype(np.float32))
    print(f"kd.h5 /mse: {MSE_N} x {MSE_D}, {n_counted} rows counted, sum {float(total):.6g}, loss {float(loss):.6g}")


def main():
    if len(sys.argv) != 2:
        print("usage: gen_kd.py FIXTURES_DIR", file=sys.stderr)
        return 2
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    t0 = time.time()
    gen = torch.Generator().manual_seed(8101)
    s32, t32 = make_logits(gen)
    mask = torch.tensor(MASK, dtype=torch.uint8)
    path = os.path.join(out, "kd.h5")
    tmp = path + ".tmp"
    with h5py.File(tmp, "w") as f:
        f.attrs["generator"] = "tests/reference/gen_kd.py"
        for name, tau in TAUS:
            write_kd(f, name, tau, s32, t32, mask)
        write_mse(f, gen)
    os.replace(tmp, path)
    print(f"gen_kd.py: {path} ({time.time() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
