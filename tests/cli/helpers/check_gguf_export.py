"""Check a GGUF written by `trinity export --format gguf` with the gguf package from PyPI (llama.cpp's
gguf-py), independently of trinity's reader:

usage: check_gguf_export.py OUT.gguf BACK.h5 SRC.h5 KIND

  OUT.gguf  the export;  BACK.h5  `trinity import OUT.gguf` (trinity's own dequantization);
  SRC.h5    the checkpoint exported;  KIND  dense | synthetic | ste | primal

Every tensor that GGUFReader lists is dequantized with gguf.quants.dequantize and must equal trinity's
import of the same file exactly (after llama.cpp's Q/K row permutation, which the import undoes). Then,
from the source checkpoint alone (numpy, no trinity code):
  dense      F16 tensors are the float16 roundings of the weights, F32 ones the weights
  synthetic  attention/MLP rows are fp16(s) * {-1, 0, 1} with s = mean|W| of the tensor (absmean,
             BitNet b1.58), |fp16(s) - s| <= 2^-11 s, and the codes round(W / s) clipped to [-1, 1]
             wherever W / s is not within 1e-3 of a rounding boundary
  ste        ternary per row: the same with s = mean|W| of the row
  primal     ghost tensors equal the float16 rounding of scale * grid[idx] from /primal/<name>
"""
import sys

import h5py
import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize

gg, back_path, src_path, kind = sys.argv[1:5]
r = GGUFReader(gg)


def field(name):
    f = r.fields.get(name)
    return None if f is None else f.contents()


arch = field("general.architecture")
n_head, n_kv = field(f"{arch}.attention.head_count"), field(f"{arch}.attention.head_count_kv")
blk = {"attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
       "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj", "ffn_norm": "post_attention_layernorm",
       "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
       "attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm"}
top = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
       "output.weight": "lm_head.weight"}


def hf_name(n):
    if n in top:
        return top[n]
    _, layer, mod, sfx = n.split(".")
    return f"model.layers.{layer}.{blk[mod]}.{sfx}"


def permute(w, heads):
    """llama.cpp's convert_hf_to_gguf.py LlamaModel.permute, written from its description: each head's rows
    reordered so that RoPE rotates adjacent pairs."""
    if w.ndim == 1:
        return w.reshape(heads, 2, -1).swapaxes(1, 2).reshape(-1)
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def fp16(x):
    return np.asarray(x, dtype=np.float32).astype(np.float16).astype(np.float32)


back = h5py.File(back_path, "r")["params"]
src = h5py.File(src_path, "r")
fails, n_checked, n_code = 0, 0, 0
types = {}
for t in r.tensors:
    if t.name == "rope_freqs.weight":
        continue
    x = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32).reshape([int(d) for d in reversed(t.shape)])
    types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
    hf = hf_name(t.name)
    b = np.asarray(back[hf], dtype=np.float32)
    mod = t.name.split(".")[2] if t.name.startswith("blk.") else ""
    heads = n_head if mod == "attn_q" else n_kv if mod == "attn_k" else 0
    if heads and arch == "llama":
        b = permute(b, heads)
    if not np.array_equal(x, b):
        print(f"FAIL {t.name} ({t.tensor_type.name}): gguf-py and trinity's import differ by {np.abs(x - b).max()}")
        fails += 1
        continue
    n_checked += 1
    # ---- against the source checkpoint ----
    w = np.asarray(src["params"][hf], dtype=np.float32) if hf in src["params"] else None
    if w is not None and heads and arch == "llama":
        w = permute(w, heads)
    snapped = kind in ("synthetic", "ste") and mod in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate",
                                                      "ffn_up", "ffn_down")  # the test's STE runs snap attn, mlp
    if w is not None and not snapped:
        want = fp16(w) if t.tensor_type.name == "F16" else w
        if not np.array_equal(x, want):
            print(f"FAIL {t.name}: not the {t.tensor_type.name} of the checkpoint's weights")
            fails += 1
    elif snapped:
        s = np.abs(w.astype(np.float64)).mean(axis=1 if kind == "ste" else None, keepdims=True)
        s = np.broadcast_to(s, (w.shape[0], 1))
        d = np.abs(x).max(axis=1, keepdims=True)  # every row has a nonzero code for these random weights
        code = x / d
        ratio = w / s
        near = np.abs(np.abs(ratio) - 0.5) < 1e-3
        want = np.clip(np.round(ratio), -1, 1)
        ok = (np.isin(code, [-1.0, 0.0, 1.0]).all() and np.all(np.abs(d - s) <= 2.0 ** -11 * s + 1e-9)
              and np.all((code == want) | near))
        n_code += 1
        if not ok:
            print(f"FAIL {t.name} ({t.tensor_type.name}): not fp16(absmean) x ternary codes of the weights")
            fails += 1
    elif kind == "primal" and "primal" in src and hf in src["primal"]:
        g = src["primal"][hf]
        idx, sc, grid = np.asarray(g["idx"]), np.asarray(g["scale"], np.float32), np.asarray(g["grid"], np.float32)
        sc = sc.reshape(-1, 1) if sc.size > 1 else sc.reshape(1, 1)
        v = sc * grid[idx]
        if heads and arch == "llama":
            v = permute(v, heads)
        want = fp16(v) if t.tensor_type.name == "F16" else v
        if t.tensor_type.name in ("F16", "F32"):
            if not np.array_equal(x, want):
                print(f"FAIL {t.name}: not the {t.tensor_type.name} of scale * grid[idx]")
                fails += 1
        else:  # a block type: the codes exact, the scale within fp16 rounding
            if not np.allclose(x, v, rtol=2.0 ** -11, atol=0):
                print(f"FAIL {t.name}: not scale * grid[idx] within fp16 scale rounding")
                fails += 1
        n_code += 1

tok = field("tokenizer.ggml.model")
print(f"{gg}: {arch}, {n_checked} tensors equal to trinity's import ({', '.join(f'{k} x{v}' for k, v in sorted(types.items()))}), "
      f"{n_code} checked against the checkpoint's grid values, tokenizer {tok}")
sys.exit(1 if fails else 0)
