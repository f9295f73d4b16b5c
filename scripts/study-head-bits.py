#!/usr/bin/env python3
"""How much top-1 agreement with an F16 LM head each rule for storing the head keeps (docs/TRIN.md, "What a
quantized head costs"): the final hidden states of a model over 8 teacher-forced windows of 512 tokens are
computed once (tests/reference/llama_ref.py, float32, the body's weights rounded to F16 as `--dtype f16`
exports them), then every head rule is applied to the same states and its argmax compared with the F16
table's. Per-row absmax int8 is trinity's Q8 rule (export/table_quant.h).

    trinity import SmolLM2-135M-Instruct.Q4_1.gguf -o base.h5
    trinity export base.h5 -o f16.trin --dtype f16
    trinity prepare text --tokenizer f16.trin --in wiki.test.raw -o wiki.h5
    /usr/bin/python3 scripts/study-head-bits.py base.h5 wiki.h5        (~5 min on 2 cores)
"""
import os
import sys
import time

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "reference"))
import llama_ref as R  # noqa: E402


def load(ckpt):
    f = h5py.File(ckpt, "r")
    a = f["config"].attrs
    if not int(a["tied_embeddings"]):
        sys.exit("study-head-bits: the study takes a tied model (the head is the embedding table)")
    cfg = R.LlamaConfig(dim=int(a["dim"]), n_layers=int(a["n_layers"]), n_heads=int(a["n_heads"]),
                        n_kv_heads=int(a["n_kv_heads"]), ffn_dim=int(a["ffn_dim"]), vocab_size=int(a["vocab_size"]),
                        max_seq_len=int(a["max_seq_len"]), rope_theta=float(a["rope_theta"]),
                        norm_eps=float(a["norm_eps"]), tied_embeddings=False)
    P = {k: torch.from_numpy(f["params"][k][()].astype(np.float16).astype(np.float32)) for k in f["params"]}
    return cfg, P


def hidden_states(cfg, P, tokens):
    """rmsnorm(x) · final_norm for every position: the forward with an identity matrix as the head."""
    Q = dict(P)
    Q["lm_head.weight"] = torch.eye(cfg.dim)
    with torch.no_grad():
        return torch.cat([R.forward(cfg, Q, torch.from_numpy(t[None]), dtype=torch.float32)[0] for t in tokens])


def absmax_rows(W, bits):
    qmax = 2 ** (bits - 1) - 1
    s = np.abs(W).max(1, keepdims=True) / qmax
    s[s == 0] = 1
    return np.clip(np.rint(W / s), -qmax, qmax) * s


def absmax_blocks(W, bits, block):
    qmax = 2 ** (bits - 1) - 1
    Wb = W.reshape(W.shape[0], -1, block)
    d = (np.abs(Wb).max(2, keepdims=True) / qmax).astype(np.float16).astype(np.float64)
    d[d == 0] = 1
    return (np.clip(np.rint(Wb / d), -qmax, qmax) * d).reshape(W.shape)


def with_outliers(W, frac):
    """int8 absmax rows over all but the largest frac of each row's |w|, which stay as they are."""
    k = max(1, int(frac * W.shape[1]))
    idx = np.argsort(-np.abs(W), 1)[:, :k]
    rest = W.copy()
    np.put_along_axis(rest, idx, 0, 1)
    q = absmax_rows(rest, 8)
    np.put_along_axis(q, idx, np.take_along_axis(W, idx, 1), 1)
    return q


def column_scaled(W, H, alpha):
    """int8 absmax rows of W·diag(c), c = (mean |h| per column)^alpha, divided back (AWQ's idea; the runner
    would scale h by 1/c instead)."""
    c = np.abs(H).mean(0) ** alpha
    return absmax_rows(W * c, 8) / c


def gptq_rows(W, Hc, damp=0.01):
    """Per-row int8 with GPTQ's error feedback (Frantar et al. 2022): columns quantized in order, each
    column's rounding error pushed onto the later columns through the inverse Hessian's Cholesky factor;
    the Hessian from calibration states Hc (other positions than the ones measured)."""
    W = W.copy()
    d = W.shape[1]
    s = np.abs(W).max(1) / 127
    s[s == 0] = 1
    Hs = Hc.T @ Hc / len(Hc)
    Hs += damp * np.mean(np.diag(Hs)) * np.eye(d)
    U = np.linalg.cholesky(np.linalg.inv(Hs)).T
    Q = np.zeros_like(W)
    for j in range(d):
        Q[:, j] = np.clip(np.rint(W[:, j] / s), -127, 127) * s
        W[:, j + 1:] -= np.outer((W[:, j] - Q[:, j]) / U[j, j], U[j, j + 1:])
    return Q


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    torch.set_num_threads(os.cpu_count() or 1)
    cfg, P = load(sys.argv[1])
    tokens = h5py.File(sys.argv[2], "r")["tokens"][: 8 * 512].astype(np.int64)
    if tokens.size < 8 * 512:
        sys.exit("study-head-bits: the shard holds fewer than 4,096 tokens")
    t0 = time.time()
    H = hidden_states(cfg, P, tokens.reshape(8, 512)).double().numpy()
    W = P["model.embed_tokens.weight"].double().numpy()   # the F16 table: the reference
    top = (H @ W.T).argmax(1)
    print(f"{H.shape[0]} positions, hidden states in {time.time() - t0:.0f} s")
    cols = W.shape[1]

    def report(name, bits, Wq):
        rel = np.sqrt(((Wq - W) ** 2).mean() / (W ** 2).mean())
        agree = ((H @ Wq.T).argmax(1) == top).mean()
        print(f"| {name} | {bits:.2f} | {rel:.2e} | {100 * agree:.2f}% |")

    print("| head rule | bits/weight | relative RMS error | top-1 agreement with F16 |\n|---|---|---|---|")
    with h5py.File(sys.argv[1], "r") as f:
        report("the checkpoint's F32 table", 32, f["params"]["model.embed_tokens.weight"][()].astype(np.float64))
    for b in (8, 9, 10, 11, 12):
        report(f"per-row absmax int{b}" + (" (trinity `Q8`)" if b == 8 else ""), b + 32 / cols, absmax_rows(W, b))
    for frac in (0.005, 0.02):
        report(f"per-row int8, largest {frac:.1%} of each row kept in F16 (+ 16-bit index)", 8 + 32 * frac + 32 / cols,
               with_outliers(W, frac))
    report("blocks of 32, int8 + F16 scale (GGML `Q8_0`)", 8.5, absmax_blocks(W, 8, 32))
    for alpha in (0.25, 0.5, 1.0):
        report(f"per-row int8 of W·diag(mean|h|^{alpha})", 8 + 64 / cols, column_scaled(W, H, alpha))
    # calibration: 16 windows from elsewhere in the shard, none of the measured positions
    cal = h5py.File(sys.argv[2], "r")["tokens"][100000: 100000 + 16 * 512].astype(np.int64)
    if cal.size == 16 * 512:
        Hc = hidden_states(cfg, P, cal.reshape(16, 512)).double().numpy()
        report("per-row int8 by GPTQ (8,192 calibration positions)", 8 + 32 / cols, gptq_rows(W, Hc))
    # the exact rows beside a Q8 table: the rank of the F16 top-1 among the Q8 logits
    Q = H @ absmax_rows(W, 8).T
    rank = (Q > Q[np.arange(len(Q)), top][:, None]).sum(1)
    print(f"rank of the F16 top-1 among the Q8 head's logits: at most {rank.max()} (0 = first)")


if __name__ == "__main__":
    main()
