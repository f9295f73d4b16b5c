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


def forward(cfg, params, inputs, dtype=torch.float64):
    """logits [B, T, V] for int token ids `inputs` [B, T]. params: name -> tensor (any float dtype;
    converted to `dtype`, so autograd gradients land on the tensors passed in)."""
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
        q = (h @ P[p + "self_attn.q_proj.weight"].T).view(B, T, H, hd).transpose(1, 2)   # [B, H, T, hd]
        k = (h @ P[p + "self_attn.k_proj.weight"].T).view(B, T, KV, hd).transpose(1, 2)  # [B, KV, T, hd]
        v = (h @ P[p + "self_attn.v_proj.weight"].T).view(B, T, KV, hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(H // KV, dim=1)                                         # GQA
        v = v.repeat_interleave(H // KV, dim=1)
        s = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
        s = s.masked_fill(~causal, float("-inf"))
        a = torch.softmax(s, dim=-1) @ v                                                # [B, H, T, hd]
        a = a.transpose(1, 2).reshape(B, T, H * hd)
        x = x + a @ P[p + "self_attn.o_proj.weight"].T
        h = rms_norm(x, P[p + "post_attention_layernorm.weight"], eps)
        g = torch.nn.functional.silu(h @ P[p + "mlp.gate_proj.weight"].T)
        u = h @ P[p + "mlp.up_proj.weight"].T
        x = x + (g * u) @ P[p + "mlp.down_proj.weight"].T
    x = rms_norm(x, P["model.norm.weight"], eps)
    head = P["model.embed_tokens.weight"] if cfg.tied_embeddings else P["lm_head.weight"]
    return x @ head.T


def nll_and_loss(logits, targets, mask):
    """Per-position NLL [B, T] and the masked mean (0 when nothing is counted)."""
    logp = torch.log_softmax(logits, dim=-1)
    nll = -logp.gather(-1, targets.long().unsqueeze(-1)).squeeze(-1)
    m = mask.to(logits.dtype)
    n = m.sum()
    loss = (nll * m).sum() / n if n > 0 else (nll * 0).sum()
    return nll, loss


def loss_and_grads(cfg, params, inputs, targets, mask, dtype=torch.float64):
    """Forward + backward in `dtype`. Returns (logits, nll, loss, grads) as detached tensors of `dtype`;
    grads: name -> dLoss/dparam (for a tied model the embedding's gradient includes the head's)."""
    leaves = {k: v.detach().to(dtype).requires_grad_(True) for k, v in params.items()}
    logits = forward(cfg, leaves, inputs, dtype)
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
    print("llama_ref.py: self-check passed")
