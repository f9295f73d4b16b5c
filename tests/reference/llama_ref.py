"""A plain-PyTorch Llama (Hugging Face LlamaForCausalLM conventions) and file writers for test fixtures.

This is the reference that model/llama.c is checked against, so it is written for clarity, not speed:
every step of the forward pass is one line of torch, and autograd gives the gradients.

Conventions (those of Hugging Face transformers' models/llama/modeling_llama.py, which trinity follows):
  * RMSNorm: y = x * rsqrt(mean(x^2, last dim) + eps) * w      (eps inside the square root)
  * RoPE, "rotate half": inv_freq[i] = 1 / theta^(2i / hd) for i < hd/2; angle(t, i) = t * inv_freq[i];
    cos/sin are taken of cat(angles, angles) over the head dim, and
        rope(x) = x * cos + rotate_half(x) * sin,   rotate_half([x1, x2]) = [-x2, x1]
    where x1, x2 are the first and second halves of the head vector (NOT interleaved pairs).
  * Attention: q, k, v = h Wq^T, h Wk^T, h Wv^T (no biases); RoPE on q and k; scores q k^T / sqrt(hd),
    causal mask, softmax, times v; grouped-query attention: query head h reads kv head h // (H / KV)
    (HF's repeat_kv repeats each kv head H/KV times consecutively); output through Wo.
  * MLP (SwiGLU): down(silu(gate(h)) * up(h)).
  * Head: logits = rmsnorm(x) * final_norm times lm_head^T; with tied embeddings lm_head is embed_tokens.
  * Loss: mean over positions with mask == 1 of -log softmax(logits)[target].

The reference computes in float64 from the float32 parameters (the parameters are exactly representable
in float64, so the only error left in the fixture is the final rounding of the results to float32).
"""

import json
import math
import os
import struct
from dataclasses import dataclass, asdict
from fractions import Fraction

import numpy as np
import torch


@dataclass
class LlamaConfig:
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    ffn_dim: int
    vocab_size: int
    max_seq_len: int = 2048
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    tied_embeddings: bool = False
    bos_id: int = -1
    eos_id: int = -1

    @property
    def head_dim(self):
        return self.dim // self.n_heads

    def to_hf(self, torch_dtype="float32"):
        """config.json contents with Hugging Face LlamaConfig keys."""
        d = {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_size": self.dim,
            "num_hidden_layers": self.n_layers,
            "num_attention_heads": self.n_heads,
            "num_key_value_heads": self.n_kv_heads,
            "intermediate_size": self.ffn_dim,
            "vocab_size": self.vocab_size,
            "max_position_embeddings": self.max_seq_len,
            "rope_theta": self.rope_theta,
            "rms_norm_eps": self.norm_eps,
            "tie_word_embeddings": bool(self.tied_embeddings),
            "hidden_act": "silu",
            "torch_dtype": torch_dtype,
        }
        # HF writes null when a model has no such token; trinity's -1 means the same.
        d["bos_token_id"] = self.bos_id if self.bos_id >= 0 else None
        d["eos_token_id"] = self.eos_id if self.eos_id >= 0 else None
        return d


def param_shapes(cfg):
    """(HF name, shape) of every parameter, in trinity's layout order (model/params.c)."""
    d, hd, f, V = cfg.dim, cfg.head_dim, cfg.ffn_dim, cfg.vocab_size
    q, kv = cfg.n_heads * hd, cfg.n_kv_heads * hd
    out = [("model.embed_tokens.weight", (V, d))]
    for i in range(cfg.n_layers):
        p = f"model.layers.{i}."
        out += [
            (p + "input_layernorm.weight", (d,)),
            (p + "self_attn.q_proj.weight", (q, d)),
            (p + "self_attn.k_proj.weight", (kv, d)),
            (p + "self_attn.v_proj.weight", (kv, d)),
            (p + "self_attn.o_proj.weight", (d, q)),
            (p + "post_attention_layernorm.weight", (d,)),
            (p + "mlp.gate_proj.weight", (f, d)),
            (p + "mlp.up_proj.weight", (f, d)),
            (p + "mlp.down_proj.weight", (d, f)),
        ]
    out.append(("model.norm.weight", (d,)))
    if not cfg.tied_embeddings:
        out.append(("lm_head.weight", (V, d)))
    return out


def init_params(cfg, gen, std_embed=0.1, std_attn=0.1, std_mlp=0.06, std_head=0.08, norm_noise=0.1):
    """Random float32 parameters, scaled so that attention is far from uniform and every gradient is
    non-trivial: norms 1 + N(0, norm_noise^2), matrices N(0, std^2) by group."""
    params = {}
    for name, shape in param_shapes(cfg):
        if len(shape) == 1:
            t = 1.0 + norm_noise * torch.randn(shape, generator=gen, dtype=torch.float64)
        else:
            if "embed_tokens" in name:
                s = std_embed if not cfg.tied_embeddings else std_head * 1.5
            elif "lm_head" in name:
                s = std_head
            elif "self_attn" in name:
                s = std_attn
            else:
                s = std_mlp
            t = s * torch.randn(shape, generator=gen, dtype=torch.float64)
        params[name] = t.to(torch.float32)
    return params


# ---- the model -------------------------------------------------------------------------------------

def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope_cos_sin(T, hd, theta, dtype):
    inv_freq = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))  # [hd/2]
    ang = torch.outer(torch.arange(T, dtype=torch.float64), inv_freq)                 # [T, hd/2]
    emb = torch.cat((ang, ang), dim=-1)                                               # [T, hd]
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def linear(x, W, quant=None, layer=-1, kind="head"):
    """x W^T. With a `quant` (see STEQuant), W and x are first replaced by what the quantized model uses
    for linear (layer, kind); kind is one of LINEAR_KINDS, and the LM head is (-1, "head")."""
    if quant is not None:
        x = quant.input(layer, kind, x)
        W = quant.weight(layer, kind, W)
    return x @ W.T


def forward(cfg, params, inputs, dtype=torch.float64, quant=None):
    """logits [B, T, V] for int token ids `inputs` [B, T]. params: name -> tensor (any float dtype;
    converted to `dtype`, so autograd gradients land on the tensors passed in). quant: None (dense) or an
    STEQuant deciding the weights and inputs of every linear (quantized training)."""
    P = {k: v.to(dtype) for k, v in params.items()}
    B, T = inputs.shape
    H, KV, hd = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
    # trinity's config holds rope_theta and norm_eps as float32: use exactly those values.
    theta, eps = float(np.float32(cfg.rope_theta)), float(np.float32(cfg.norm_eps))
    cos, sin = rope_cos_sin(T, hd, theta, dtype)
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    x = P["model.embed_tokens.weight"][inputs.long()]                                 # [B, T, D]
    for i in range(cfg.n_layers):
        p = f"model.layers.{i}."
        h = rms_norm(x, P[p + "input_layernorm.weight"], eps)
        q = linear(h, P[p + "self_attn.q_proj.weight"], quant, i, "q")
        k = linear(h, P[p + "self_attn.k_proj.weight"], quant, i, "k")
        v = linear(h, P[p + "self_attn.v_proj.weight"], quant, i, "v")
        q = q.view(B, T, H, hd).transpose(1, 2)                                         # [B, H, T, hd]
        k = k.view(B, T, KV, hd).transpose(1, 2)                                        # [B, KV, T, hd]
        v = v.view(B, T, KV, hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(H // KV, dim=1)                                         # GQA
        v = v.repeat_interleave(H // KV, dim=1)
        s = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
        s = s.masked_fill(~causal, float("-inf"))
        a = torch.softmax(s, dim=-1) @ v                                                # [B, H, T, hd]
        a = a.transpose(1, 2).reshape(B, T, H * hd)
        x = x + linear(a, P[p + "self_attn.o_proj.weight"], quant, i, "o")
        h = rms_norm(x, P[p + "post_attention_layernorm.weight"], eps)
        g = torch.nn.functional.silu(linear(h, P[p + "mlp.gate_proj.weight"], quant, i, "gate"))
        u = linear(h, P[p + "mlp.up_proj.weight"], quant, i, "up")
        x = x + linear(g * u, P[p + "mlp.down_proj.weight"], quant, i, "down")
    x = rms_norm(x, P["model.norm.weight"], eps)
    head = P["model.embed_tokens.weight"] if cfg.tied_embeddings else P["lm_head.weight"]
    return linear(x, head, quant, -1, "head")


def nll_and_loss(logits, targets, mask):
    """Per-position NLL [B, T] and the masked mean (0 when nothing is counted)."""
    logp = torch.log_softmax(logits, dim=-1)
    nll = -logp.gather(-1, targets.long().unsqueeze(-1)).squeeze(-1)
    m = mask.to(logits.dtype)
    n = m.sum()
    loss = (nll * m).sum() / n if n > 0 else (nll * 0).sum()
    return nll, loss


def loss_and_grads(cfg, params, inputs, targets, mask, dtype=torch.float64, quant=None):
    """Forward + backward in `dtype`. Returns (logits, nll, loss, grads) as detached tensors of `dtype`;
    grads: name -> dLoss/dparam (for a tied model the embedding's gradient includes the head's). With a
    `quant`, the gradients are those of the shadow weights (straight-through)."""
    leaves = {k: v.detach().to(dtype).requires_grad_(True) for k, v in params.items()}
    logits = forward(cfg, leaves, inputs, dtype, quant)
    nll, loss = nll_and_loss(logits, targets, mask)
    loss.backward()
    grads = {k: v.grad.detach() for k, v in leaves.items()}
    return logits.detach(), nll.detach(), loss.detach(), grads


def windowed_loss(cfg, params, tokens, loss_mask, seq_len, batch=8):
    """`trinity eval` semantics: non-overlapping windows of seq_len + 1 tokens with stride seq_len
    (inputs w[0:T], targets w[1:T+1], counted where loss_mask of the target is 1); the mean NLL over
    every counted token of every window. Returns (mean loss, number of counted tokens)."""
    tokens = np.asarray(tokens, dtype=np.int64)
    loss_mask = np.asarray(loss_mask, dtype=np.uint8)
    n_win = (len(tokens) - 1) // seq_len
    total, count = 0.0, 0
    with torch.no_grad():
        for s in range(0, n_win, batch):
            idx = range(s, min(n_win, s + batch))
            w = np.stack([tokens[i * seq_len:i * seq_len + seq_len + 1] for i in idx])
            m = np.stack([loss_mask[i * seq_len + 1:i * seq_len + seq_len + 1] for i in idx])
            logits = forward(cfg, params, torch.from_numpy(w[:, :-1]))
            nll, _ = nll_and_loss(logits, torch.from_numpy(w[:, 1:]), torch.from_numpy(m))
            mt = torch.from_numpy(m).to(torch.float64)
            total += float((nll * mt).sum())
            count += int(m.sum())
    return total / count, count


# ---- quantized training (STE): grids, scales, snapping, activation fake-quantization -----------------
#
# What quant/ and optim/ste.h do, restated in numpy/torch (the definitions are in quant/grid.h, scale.h,
# snap.h, act.h and optim/ste.h). The discrete decisions (which grid point, which int8 code) are the parts
# that must agree exactly with C, so:
#   * grids, scales, W / s, W_q = s * grid[idx] and the blend are computed in float32 exactly as C does
#     (IEEE float32 division/multiplication, sums in double in C's order, s rounded to float32);
#   * the forward then uses those float32 matrices, converted to float64, with a straight-through
#     estimator W_f = W + (blend - W).detach(), so dL/dW = dL/dW_f;
#   * activation fake-quantization runs in float64 on the float64 activations (C rounds its float32
#     activations: an element whose x * 127 / max|x| sits near a half-integer could round differently; the
#     fixture generator rejects batches where any element comes close, see gen_llama_ste.py).

LINEAR_KINDS = ("q", "k", "v", "o", "gate", "up", "down")  # tn_linear_kind order; the head is "head"
KIND_GROUP = {"q": "attn", "k": "attn", "v": "attn", "o": "attn", "gate": "mlp", "up": "mlp", "down": "mlp",
              "head": "head"}
SCALE_EPS = np.float32(1e-5)  # TN_SCALE_EPS


def _primes_upto(n):
    return [p for p in range(2, n + 1) if all(p % d for d in range(2, int(p ** 0.5) + 1))]


def grid_values(name):
    """A built-in grid (quant/grid.h) as a sorted float32 array; every 1/p is the float32 division 1.0f / p."""
    f = np.float32

    def recip(dens):
        return [f(1) / f(d) for d in dens]

    if name == "ternary":
        mags = [f(1)]
    elif name == "prime7":
        mags = recip((2, 3, 5))
    elif name == "prime81":
        mags = recip(_primes_upto(151)) + [f(1), f(3) / f(2), f(2), f(3)]
    elif name in ("primal15", "primal25"):
        mags = recip((1, 2, 3, 5, 7, 11, 13))
        if name == "primal25":
            mags += [f(2) / f(3)] + recip((4, 6, 8, 12))
    else:
        raise ValueError(f"unknown grid {name}")
    vals = sorted({0.0} | {float(m) for m in mags} | {-float(m) for m in mags})
    return np.array(vals, dtype=np.float32)


def _seq_sum(a):
    """Sum in double, strictly left to right (C's `for (...) s += a[j]`; np.sum would sum pairwise)."""
    a = np.asarray(a, dtype=np.float64).ravel()
    return float(np.cumsum(a)[-1]) if a.size else 0.0


def scale_f32(W, rule, per_row):
    """quant/scale.c: float32 scales [rows] (per_row) or [1] of the float32 matrix W [rows, cols].
    std = sqrt(sum((w - mean)^2) / (n - 1)) (two passes), absmean = sum|w| / n, absmax = max|w|; sums in
    double, per row left to right and then over rows in order; rounded to float32; then max(s, 1e-5f)."""
    W = np.asarray(W, dtype=np.float32)
    rows, cols = W.shape
    W64 = W.astype(np.float64)

    def value(sumabs, maxabs, m2, n):
        if rule == "std":
            return math.sqrt(m2 / (n - 1)) if n > 1 else 0.0
        if rule == "absmean":
            return sumabs / n
        if rule == "absmax":
            return maxabs
        raise ValueError(f"unknown scale rule {rule}")

    def guard(s):
        f = np.float32(s)
        return f if f > SCALE_EPS else SCALE_EPS

    row_sum = [_seq_sum(W64[r]) for r in range(rows)]
    row_sumabs = [_seq_sum(np.abs(W64[r])) for r in range(rows)]
    row_max = np.abs(W64).max(axis=1)
    if per_row:
        out = []
        for r in range(rows):
            m2 = _seq_sum((W64[r] - row_sum[r] / cols) ** 2) if rule == "std" else 0.0
            out.append(guard(value(row_sumabs[r], row_max[r], m2, cols)))
        return np.array(out, dtype=np.float32)
    n = rows * cols
    m2 = 0.0
    if rule == "std":
        mean = _seq_sum(row_sum) / n
        m2 = _seq_sum([_seq_sum((W64[r] - mean) ** 2) for r in range(rows)])
    return np.array([guard(value(_seq_sum(row_sumabs), float(row_max.max()), m2, n))], dtype=np.float32)


def snap_indices(x, grid):
    """quant/snap.h: index of the grid value nearest to each float32 x, distances taken exactly; a tie goes
    to the value of smaller magnitude (to the positive one between -a and +a); beyond the ends, clip.
    For neighbours a < b, x goes up iff 2x > a + b, or 2x == a + b and a + b <= 0 (then |b| <= |a|)."""
    x2 = 2.0 * np.asarray(x, dtype=np.float32).astype(np.float64)  # exact
    idx = np.zeros(x2.shape, dtype=np.int64)
    for a, b in zip(grid[:-1], grid[1:]):
        s = float(a) + float(b)
        assert Fraction(s) == Fraction(float(a)) + Fraction(float(b)), "midpoint not exact in double"
        idx += (x2 > s) if s > 0 else (x2 >= s)
    return idx


def quantize_tensor(W, grid, rule, per_row):
    """tn_quantize_tensor: (W_q float32, idx, scales) with W_q = s * grid[nearest(W / s)], all float32."""
    W = np.asarray(W, dtype=np.float32)
    s = scale_f32(W, rule, per_row)
    sc = s[:, None] if per_row else s[0]
    idx = snap_indices(W / sc, grid)                 # float32 division, correctly rounded, as in C
    Wq = (sc * grid[idx]).astype(np.float32)         # float32 product
    assert Wq.dtype == np.float32
    return Wq, idx, s


def snap_fragility(W, grid, s, per_row, ulps=4):
    """How many weights would snap differently if the scale were off by up to `ulps` float32 ulps (a
    different summation order in C could move s by one ulp at most; an exact tie of W / s is covered too,
    since moving s then moves W / s off the tie)."""
    W = np.asarray(W, dtype=np.float32)
    base = snap_indices(W / (s[:, None] if per_row else s[0]), grid)
    bad = np.zeros(W.shape, dtype=bool)
    for direction in (np.float32(0), np.float32(np.inf)):
        t = s.copy()
        for _ in range(ulps):
            t = np.nextafter(t, direction).astype(np.float32)
            bad |= snap_indices(W / (t[:, None] if per_row else t[0]), grid) != base
    return bad


def ste_blend(W, Wq, lam):
    """tn_ste_blend in float32: W + lam (Wq - W); lam >= 1 is Wq exactly, lam <= 0 is W exactly."""
    W, Wq = np.asarray(W, dtype=np.float32), np.asarray(Wq, dtype=np.float32)
    if lam >= 1:
        return Wq.copy()
    if not lam > 0:
        return W.copy()
    return (W + np.float32(lam) * (Wq - W)).astype(np.float32)


def act_fake_quant(x):
    """quant/act.h, BitNet b1.58 per-token absmax int8, in x's dtype: m = max|x| per row,
    k = 127 / m, q = clamp(round(x k), -127, 127) with round half to even, x_hat = q / k;
    an all-zero row (m = 0) gives q = 0, x_hat = 0 (the runner kernel's rule, docs/PACKING.md).
    Returns (x_hat, q, x k)."""
    m = x.abs().amax(dim=-1, keepdim=True)
    k = torch.where(m > 0, 127.0 / torch.where(m > 0, m, torch.ones_like(m)), torch.zeros_like(m))
    xk = x * k
    q = torch.round(xk).clamp(-127, 127)
    x_hat = torch.where(m > 0, q / torch.where(k > 0, k, torch.ones_like(k)), torch.zeros_like(q))
    return x_hat, q, xk


class STEQuant:
    """The quantized model's view of every linear, for forward(..., quant=STEQuant(...)).

    grid: built-in name; scale: std / absmean / absmax; per_row: one scale per output row; lam: the blend
    factor; layers: groups to quantize, any of attn, mlp, head; act_bits: 0 or 8. A quantized linear uses
    W_f = blend(W, W_q) with dL/dW = dL/dW_f, and with act_bits 8 the fake-quantized input x_hat with
    dL/dx = dL/dx_hat (straight-through); its weight gradient is then dy^T x_hat. Everything else is dense.
    Records what it did (snap indices, scales, fragile weights, int8 codes and x k) for the generator."""

    def __init__(self, grid, scale, per_row, lam, layers, act_bits, memo=None):
        assert act_bits in (0, 8)
        self.memo = memo  # optional dict shared between instances: (rule, W) -> its quantization
        self.grid_name, self.grid = grid, grid_values(grid)
        self.scale, self.per_row, self.lam = scale, bool(per_row), float(lam)
        self.layers, self.act_bits = tuple(layers), int(act_bits)
        assert all(g in ("attn", "mlp", "head") for g in self.layers)
        self.snaps = {}   # (layer, kind) -> dict(idx, scales, fragile)
        self.acts = []    # ((layer, kind), q, x k) per quantized input, in call order

    def quantized(self, layer, kind):
        return KIND_GROUP[kind] in self.layers

    def weight(self, layer, kind, W):
        if not self.quantized(layer, kind):
            return W
        W32 = W.detach().to(torch.float32).numpy()
        assert np.array_equal(W32.astype(np.float64), W.detach().to(torch.float64).numpy()), "W not float32"
        key = (self.grid_name, self.scale, self.per_row, self.lam, W32.shape, W32.tobytes())
        if self.memo is not None and key in self.memo:
            rec = self.memo[key]
        else:
            Wq, idx, s = quantize_tensor(W32, self.grid, self.scale, self.per_row)
            rec = dict(idx=idx, scales=s, Wf32=ste_blend(W32, Wq, self.lam),
                       fragile=snap_fragility(W32, self.grid, s, self.per_row))
            if self.memo is not None:
                self.memo[key] = rec
        Wf = torch.from_numpy(rec["Wf32"]).to(W.dtype)
        self.snaps[(layer, kind)] = dict(rec, Wf=Wf)
        out = W + (Wf - W).detach()
        if W.dtype == torch.float64:
            assert torch.equal(out.detach(), Wf)  # float32 values: W + (Wf - W) is exact in double
        return out

    def input(self, layer, kind, x):
        if self.act_bits != 8 or not self.quantized(layer, kind):
            return x
        xq, q, xk = act_fake_quant(x.detach())
        self.acts.append(((layer, kind), q, xk))
        return x + (xq - x).detach()

    def act_margin(self):
        """Smallest distance of any x k from a rounding boundary (a half-integer), over all inputs."""
        m = math.inf
        for _, _, xk in self.acts:
            d = ((xk - torch.floor(xk)) - 0.5).abs()
            m = min(m, float(d.min()))
        return m


def self_check_quant():
    """Checks of the quantizer restatement against independent definitions. Raises AssertionError."""
    gen = torch.Generator().manual_seed(7)
    rng = np.random.default_rng(7)
    # Grids: sizes and exact values (1/p as float32 division, so 1/3 is the correctly rounded float).
    for name, n in (("ternary", 3), ("prime7", 7), ("prime81", 81), ("primal15", 15), ("primal25", 25)):
        g = grid_values(name)
        assert len(g) == n and np.all(np.diff(g) > 0) and np.array_equal(g, -g[::-1]), name
    assert np.float32(1) / np.float32(3) in grid_values("prime7")
    assert float(grid_values("prime7")[5]) == float(np.float32(1.0 / 3.0))

    # Snapping equals the brute-force exact argmin (ties to the smaller magnitude), incl. ties and extremes.
    def brute(x, g):
        fx = Fraction(float(x))
        best = None
        for j, v in enumerate(g):
            key = (abs(fx - Fraction(float(v))), abs(float(v)), -float(v))
            if best is None or key < best[0]:
                best = (key, j)
        return best[1]

    for name in ("ternary", "prime7", "primal15", "primal25", "prime81"):
        g = grid_values(name)
        mids = [np.float32((float(a) + float(b)) / 2) for a, b in zip(g[:-1], g[1:])]
        xs = np.concatenate([
            rng.normal(0, 0.7, 300).astype(np.float32), np.array(mids, dtype=np.float32),
            np.nextafter(np.array(mids, dtype=np.float32), np.float32(np.inf)),
            np.nextafter(np.array(mids, dtype=np.float32), np.float32(-np.inf)), g,
            np.array([0.0, -0.0, 1e30, -1e30, 1e-30, -1e-30, 0.5, -0.5, 1.5, -1.5], dtype=np.float32)])
        got = snap_indices(xs, g)
        assert all(got[i] == brute(xs[i], g) for i in range(len(xs))), name
    # Ternary / absmean is BitNet b1.58's RoundClip(W / s, -1, 1) with torch.round (half to even).
    W = (0.05 * torch.randn(40, 50, generator=gen)).to(torch.float32).numpy()
    W[0, :4] = [0.0, 1e-9, -1e-9, 0.3]
    g = grid_values("ternary")
    Wq, idx, s = quantize_tensor(W, g, "absmean", False)
    bitnet = torch.round(torch.from_numpy(W / s[0])).clamp(-1, 1).numpy()
    assert np.array_equal(idx - 1, bitnet.astype(np.int64))
    # Constructed ternary ties: W / s = +-0.5 exactly goes to 0, +-1.5 to +-1.
    assert list(snap_indices(np.array([0.5, -0.5, 1.5, -1.5], np.float32), g)) == [1, 1, 2, 0]
    # Scales against straightforward float64 formulas (rounded to float32, before any tie could matter).
    W64 = W.astype(np.float64)
    assert scale_f32(W, "std", False)[0] == np.float32(W64.std(ddof=1))
    assert scale_f32(W, "absmean", False)[0] == np.float32(np.abs(W64).mean())
    assert scale_f32(W, "absmax", False)[0] == np.float32(np.abs(W64).max())
    assert np.array_equal(scale_f32(W, "std", True), W64.std(axis=1, ddof=1).astype(np.float32))
    assert np.array_equal(scale_f32(W, "absmean", True), np.abs(W64).mean(axis=1).astype(np.float32))
    assert scale_f32(np.zeros((2, 3), np.float32), "std", True)[1] == SCALE_EPS
    # Blend: lam = 1 is W_q exactly, lam = 0 is W.
    assert np.array_equal(ste_blend(W, Wq, 1.0), Wq) and np.array_equal(ste_blend(W, Wq, 0.0), W)
    # Activation fake-quantization: round half to even, codes in [-127, 127], max |x| -> +-127, zero row -> 0.
    x = torch.tensor([[127.0, 2.5, -2.5, 3.5, 0.4], [0.0, 0.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    xh, q, _ = act_fake_quant(x)
    assert q[0].tolist() == [127, 2, -2, 4, 0] and q[1].abs().sum() == 0 and torch.equal(xh[1], x[1])
    x = torch.randn(6, 33, generator=gen, dtype=torch.float64)
    xh, q, _ = act_fake_quant(x)
    m = x.abs().amax(-1, keepdim=True)
    assert torch.all((xh - x).abs() <= m / 254 * (1 + 1e-12)) and torch.all(q.abs().amax(-1) == 127)

    # STE: the shadow gradient equals the dense gradient at W_f (act_bits 0), for an untied and a tied model.
    for tied in (False, True):
        cfg = LlamaConfig(dim=16, n_layers=1, n_heads=2, n_kv_heads=1, ffn_dim=24, vocab_size=20, max_seq_len=8,
                          tied_embeddings=tied)
        params = init_params(cfg, gen)
        inputs = torch.randint(0, 20, (2, 6), generator=gen)
        targets = torch.randint(0, 20, (2, 6), generator=gen)
        mask = torch.ones(2, 6, dtype=torch.uint8)
        quant = STEQuant("prime7", "std", True, 0.5, ("attn", "mlp", "head"), 0)
        lq, _, _, gq = loss_and_grads(cfg, params, inputs, targets, mask, quant=quant)
        dense = dict(params)
        for (layer, kind), rec in quant.snaps.items():
            if kind != "head":
                dense[linear_name(layer, kind)] = rec["Wf"].to(torch.float32)
        if tied:  # the head becomes a separate (untied) matrix W_f(E); E's gradient is lookup + head
            ucfg = LlamaConfig(**{**asdict(cfg), "tied_embeddings": False})
            dense["lm_head.weight"] = quant.snaps[(-1, "head")]["Wf"].to(torch.float32)
            ld, _, _, gd = loss_and_grads(ucfg, dense, inputs, targets, mask)
            gd["model.embed_tokens.weight"] = gd["model.embed_tokens.weight"] + gd.pop("lm_head.weight")
        else:
            dense["lm_head.weight"] = quant.snaps[(-1, "head")]["Wf"].to(torch.float32)
            ld, _, _, gd = loss_and_grads(cfg, dense, inputs, targets, mask)
        assert torch.allclose(lq, ld, rtol=0, atol=1e-12)
        for k in gq:
            assert torch.allclose(gq[k], gd[k], rtol=0, atol=1e-12), k
    return True


def linear_name(layer, kind):
    if kind == "head":
        return "lm_head.weight"
    sub = "self_attn" if KIND_GROUP[kind] == "attn" else "mlp"
    return f"model.layers.{layer}.{sub}.{kind}_proj.weight"


# ---- Hugging Face directories (config.json + safetensors, written by hand) ---------------------------

def bf16_bits(a):
    """float32 array -> uint16 bfloat16 bit patterns, round to nearest, ties to even."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = u + 0x7FFF + ((u >> 16) & 1)
    return (u >> 16).astype(np.uint16)


def bf16_to_f32(bits):
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def round_to_dtype(a, dtype):
    """float32 array as it will read back after storing with safetensors dtype F32 / F16 / BF16."""
    a = np.asarray(a, dtype=np.float32)
    if dtype == "F32":
        return a.copy()
    if dtype == "F16":
        return a.astype(np.float16).astype(np.float32)
    if dtype == "BF16":
        return bf16_to_f32(bf16_bits(a))
    raise ValueError(f"unsupported dtype {dtype}")


def _encode(a, dtype):
    a = np.asarray(a, dtype=np.float32)
    if dtype == "F32":
        return a.astype("<f4").tobytes()
    if dtype == "F16":
        return a.astype("<f2").tobytes()
    if dtype == "BF16":
        return bf16_bits(a).astype("<u2").tobytes()
    raise ValueError(f"unsupported dtype {dtype}")


def write_safetensors(path, tensors, dtype):
    """tensors: list of (name, float32 array). Layout: u64 little-endian header length N, N bytes of JSON
    ({name: {dtype, shape, data_offsets: [begin, end)}} with offsets relative to the data section, plus
    __metadata__), padded with spaces to a multiple of 8, then the raw little-endian data."""
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name, a in tensors:
        b = _encode(a, dtype)
        header[name] = {"dtype": dtype, "shape": list(np.shape(a)), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    return off


_TORCH_DTYPE = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}


def write_hf_dir(path, cfg, params, dtype="F32", n_shards=1):
    """A Hugging Face model directory: config.json and model.safetensors, or with n_shards > 1
    model-0000i-of-0000n.safetensors plus model.safetensors.index.json. dtype: F32, F16 or BF16.
    params: name -> float32 tensor/array (HF names; no lm_head.weight when tied)."""
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(cfg.to_hf(_TORCH_DTYPE[dtype]), f, indent=2)
    items = [(n, np.asarray(params[n], dtype=np.float32)) for n, _ in param_shapes(cfg)]
    if n_shards <= 1:
        write_safetensors(os.path.join(path, "model.safetensors"), items, dtype)
        return
    per = -(-len(items) // n_shards)
    weight_map, total = {}, 0
    for s in range(n_shards):
        fname = f"model-{s + 1:05d}-of-{n_shards:05d}.safetensors"
        part = items[s * per:(s + 1) * per]
        total += write_safetensors(os.path.join(path, fname), part, dtype)
        for n, _ in part:
            weight_map[n] = fname
    with open(os.path.join(path, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)


# ---- trinity shards and fixtures (HDF5) ------------------------------------------------------------

def write_shard(path, tokens, loss_mask, doc_offsets, vocab_size, bos, eos, kind="text", template=""):
    """A trinity shard (DESIGN.md "Files"): /tokens uint32 [N], /loss_mask uint8 [N], /doc_offsets uint64
    [D+1], chunked + deflate; root attributes format, version, vocab_size, bos_id, eos_id,
    tokenizer_sha256, kind, template."""
    import h5py
    tokens = np.asarray(tokens, dtype=np.uint32)
    loss_mask = np.asarray(loss_mask, dtype=np.uint8)
    doc_offsets = np.asarray(doc_offsets, dtype=np.uint64)
    assert tokens.shape == loss_mask.shape and doc_offsets[0] == 0 and doc_offsets[-1] == len(tokens)
    with h5py.File(path, "w") as f:
        for name, a in (("tokens", tokens), ("loss_mask", loss_mask), ("doc_offsets", doc_offsets)):
            f.create_dataset(name, data=a, chunks=(max(1, min(len(a), 65536)),), compression="gzip")
        f.attrs["format"] = "trinity-shard"
        f.attrs["version"] = np.int64(1)
        f.attrs["vocab_size"] = np.int64(vocab_size)
        f.attrs["bos_id"] = np.int64(bos)
        f.attrs["eos_id"] = np.int64(eos)
        f.attrs["tokenizer_sha256"] = ""
        f.attrs["kind"] = kind
        f.attrs["template"] = template


def write_config_attrs(h5obj, cfg):
    """The model config as root attributes, trinity names (int64 / float64)."""
    for k in ("dim", "n_layers", "n_heads", "n_kv_heads", "ffn_dim", "vocab_size", "max_seq_len", "bos_id",
              "eos_id"):
        h5obj.attrs[k] = np.int64(getattr(cfg, k))
    h5obj.attrs["tied_embeddings"] = np.int64(1 if cfg.tied_embeddings else 0)
    h5obj.attrs["rope_theta"] = np.float64(cfg.rope_theta)
    h5obj.attrs["norm_eps"] = np.float64(cfg.norm_eps)


def config_dict(cfg):
    return asdict(cfg)


# ---- self-checks of the reference itself (run by gen_llama.py before it writes anything) -------------

def self_check():
    """Independent checks that the reference means what the docstring says. Raises AssertionError."""
    gen = torch.Generator().manual_seed(99)
    cfg = LlamaConfig(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=48, vocab_size=40, max_seq_len=16)
    params = init_params(cfg, gen)
    B, T, hd = 2, 12, cfg.head_dim
    inputs = torch.randint(0, cfg.vocab_size, (B, T), generator=gen)
    targets = torch.randint(0, cfg.vocab_size, (B, T), generator=gen)
    mask = (torch.rand(B, T, generator=gen) > 0.3).to(torch.uint8)

    # RoPE: rotate-half == rotating each pair (x[i], x[i + hd/2]) by angle t / theta^(2i/hd), as complex numbers.
    x = torch.randn(T, hd, generator=gen, dtype=torch.float64)
    cos, sin = rope_cos_sin(T, hd, 10000.0, torch.float64)
    y = x * cos + rotate_half(x) * sin
    ang = torch.arange(T, dtype=torch.float64)[:, None] * 10000.0 ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    z = torch.complex(x[:, :hd // 2], x[:, hd // 2:]) * torch.polar(torch.ones_like(ang), ang)
    assert torch.allclose(y, torch.cat((z.real, z.imag), -1), atol=1e-12)

    # Loss: the masked mean equals cross_entropy over the counted positions.
    logits, nll, loss, grads = loss_and_grads(cfg, params, inputs, targets, mask)
    sel = mask.bool()
    ce = torch.nn.functional.cross_entropy(logits[sel], targets[sel])
    assert abs(float(ce) - float(loss)) < 1e-12

    # Causality: changing the last input token changes only the last position's logits.
    inputs2 = inputs.clone()
    inputs2[:, -1] = (inputs2[:, -1] + 1) % cfg.vocab_size
    with torch.no_grad():
        l2 = forward(cfg, params, inputs2)
    assert torch.equal(l2[:, :-1], logits[:, :-1]) and not torch.equal(l2[:, -1], logits[:, -1])

    # GQA: equals multi-head attention whose k/v heads are the kv heads repeated (query head h -> kv head h // 2).
    mha = LlamaConfig(**{**asdict(cfg), "n_kv_heads": cfg.n_heads})
    pm = dict(params)
    for i in range(cfg.n_layers):
        for w in ("k_proj", "v_proj"):
            n = f"model.layers.{i}.self_attn.{w}.weight"
            pm[n] = params[n].view(cfg.n_kv_heads, hd, cfg.dim).repeat_interleave(2, 0).reshape(-1, cfg.dim)
    with torch.no_grad():
        assert torch.allclose(forward(mha, pm, inputs), logits, atol=1e-12)

    # Tied head: same as an untied model whose head equals the embedding; the gradient is the sum of both.
    tied = LlamaConfig(**{**asdict(cfg), "tied_embeddings": True})
    pt = {k: v for k, v in params.items() if k != "lm_head.weight"}
    pu = dict(pt, **{"lm_head.weight": pt["model.embed_tokens.weight"].clone()})
    _, _, lt, gt = loss_and_grads(tied, pt, inputs, targets, mask)
    _, _, lu, gu = loss_and_grads(cfg, pu, inputs, targets, mask)
    assert abs(float(lt) - float(lu)) < 1e-12
    e = "model.embed_tokens.weight"
    assert torch.allclose(gt[e], gu[e] + gu["lm_head.weight"], atol=1e-14)

    # Autograd against central differences on a few parameters (float64: tight).
    for name in ("model.layers.1.self_attn.q_proj.weight", "model.layers.0.input_layernorm.weight",
                 "model.norm.weight"):
        for j in (0, 5):
            p = {k: v.to(torch.float64) for k, v in params.items()}
            h = 1e-6
            p[name] = p[name].clone(); p[name].view(-1)[j] += h
            lp = float(nll_and_loss(forward(cfg, p, inputs), targets, mask)[1])
            p[name].view(-1)[j] -= 2 * h
            lm = float(nll_and_loss(forward(cfg, p, inputs), targets, mask)[1])
            fd, an = (lp - lm) / (2 * h), float(grads[name].view(-1)[j])
            assert abs(fd - an) <= 1e-6 * max(abs(fd), abs(an)) + 1e-9, (name, j, fd, an)

    # bf16 rounding: ties go to even, and the result is the nearest bf16 value.
    v = np.array([1.0, 1.0 + 2**-8, 1.0 + 3 * 2**-8, -2.5, 1e-3, 3.14159265], dtype=np.float32)
    b = bf16_to_f32(bf16_bits(v))
    assert b[0] == 1.0 and b[1] == 1.0 and b[2] == 1.0 + 4 * 2**-8 and b[3] == -2.5
    assert np.all(np.abs(b - v) <= np.abs(v) * 2**-8)
    return True


if __name__ == "__main__":
    self_check()
    self_check_quant()
    print("llama_ref.py: self-check passed")
