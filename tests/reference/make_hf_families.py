#!/usr/bin/python3
"""Regenerate the committed model-family fixtures in tests/fixtures/hf-families/ (not run by ctest).

Each case is a tiny random model built and saved by Hugging Face transformers itself, so that trinity's
import and forward/backward are checked against the library users load their models with:

  <case>/config.json, <case>/model.safetensors   written by save_pretrained (float32)
  <case>/reference.h5                            the batch and transformers' results on it:
      /inputs, /targets int32 [B,T]; /mask uint8 [B,T]; /logits float32 [B,T,V];
      /loss float32 [1] = mean over mask == 1 of -log softmax(logits)[target]  (trinity's loss; HF's own
      labels= loss shifts the labels, so it is computed here from the logits instead);
      /grads/<HF name> float32: d loss / d parameter.
The model runs in float64 (model.double(), eager attention) from the float32 parameters, so the stored
values carry no float32 error of their own. tests/unit/test_hf_families.c reads them.

Cases (the family's feature is what the test shows it needs: without it the logits no longer match):
  llama2           LlamaForCausalLM with the plain rotary embedding (Llama-2, TinyLlama, SmolLM2)
  mistral          MistralForCausalLM without a sliding window (multi-query: 4 heads, 1 kv head)
  llama3-rope      LlamaForCausalLM, rope_scaling llama3 (factor 8, low 1, high 4, original 16), T = 40
  linear-rope      LlamaForCausalLM, rope_scaling linear (factor 4), tied embeddings
  llama3-rope-v5   the llama3-rope model with config.json in transformers 5.x's layout (rope_theta and the
                   scaling inside rope_parameters; no top-level rope_theta / rope_scaling)
  qwen2-bias       Qwen2ForCausalLM: biases on q, k, v (random, std 0.12 like the weights), tied embeddings,
                   theta 1e6, eps 1e-6
  qwen3-qknorm     Qwen3ForCausalLM: per-head RMSNorm of q and k (weights 1 + N(0, 0.1^2)), head_dim 16 with
                   hidden 32 and 4 heads (q_proj [64, 32]), tied embeddings, theta 1e6

Needs transformers and h5py. Arguments: the output directory, then optionally the cases to write (default:
all that this transformers has). The committed llama / qwen2 cases were written with transformers 4.46.3 on
Debian's python3-torch 1.13; qwen3-qknorm (Qwen3 is in transformers >= 4.51) with 4.51.3 on torch 2.5.1:
    python3 -m venv --system-site-packages /tmp/hfvenv && /tmp/hfvenv/bin/pip install transformers==4.46.3
    /tmp/hfvenv/bin/python tests/reference/make_hf_families.py tests/fixtures/hf-families
    python3 -m venv /tmp/hf5venv && /tmp/hf5venv/bin/pip install torch==2.5.1 transformers==4.51.3 numpy h5py safetensors
    /tmp/hf5venv/bin/python tests/reference/make_hf_families.py tests/fixtures/hf-families qwen3-qknorm
"""

import json
import os
import shutil
import sys

import h5py
import numpy as np
import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM

try:  # transformers >= 4.51
    from transformers import Qwen3Config, Qwen3ForCausalLM
except ImportError:
    Qwen3Config = Qwen3ForCausalLM = None

B, T = 2, 40


def llama_cfg(**kw):
    base = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, vocab_size=96, max_position_embeddings=64, rms_norm_eps=1e-5,
                rope_theta=10000.0, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
                attn_implementation="eager")
    base.update(kw)
    return LlamaConfig(**base)


def qwen2_cfg(**kw):
    base = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, vocab_size=96, max_position_embeddings=64, rms_norm_eps=1e-6,
                rope_theta=1000000.0, tie_word_embeddings=True, use_sliding_window=False, bos_token_id=1,
                eos_token_id=2, attn_implementation="eager")
    base.update(kw)
    return Qwen2Config(**base)


def qwen3_cfg(**kw):
    base = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, head_dim=16, vocab_size=96, max_position_embeddings=64, rms_norm_eps=1e-6,
                rope_theta=1000000.0, tie_word_embeddings=True, use_sliding_window=False, sliding_window=None,
                attention_bias=False, bos_token_id=1, eos_token_id=2, attn_implementation="eager")
    base.update(kw)
    return Qwen3Config(**base)


def mistral_cfg(**kw):
    base = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=1, vocab_size=96, max_position_embeddings=64, rms_norm_eps=1e-5,
                rope_theta=1000000.0, tie_word_embeddings=False, sliding_window=None, bos_token_id=1,
                eos_token_id=2, attn_implementation="eager")
    base.update(kw)
    return MistralConfig(**base)


CASES = {
    "llama2": (LlamaForCausalLM, llama_cfg(), 10),
    "mistral": (MistralForCausalLM, mistral_cfg(), 15),
    "llama3-rope": (LlamaForCausalLM, llama_cfg(rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                                                                  high_freq_factor=4.0,
                                                                  original_max_position_embeddings=16)), 11),
    "linear-rope": (LlamaForCausalLM, llama_cfg(rope_scaling=dict(rope_type="linear", factor=4.0),
                                                tie_word_embeddings=True, rope_theta=500.0), 12),
    "qwen2-bias": (Qwen2ForCausalLM, qwen2_cfg(), 13),
}
if Qwen3ForCausalLM is not None:
    CASES["qwen3-qknorm"] = (Qwen3ForCausalLM, qwen3_cfg(), 14)


def randomize(model, gen):
    """Weights far from an initialised model's (std 0.1-0.3, norms around 1) so every gradient is large."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_((0.3 if "embed" in name else 0.12) * torch.randn(p.shape, generator=gen))


def write_case(out_dir, name, cls, cfg, seed):
    gen = torch.Generator().manual_seed(seed)
    model = cls(cfg)
    randomize(model, gen)
    d = os.path.join(out_dir, name)
    shutil.rmtree(d, ignore_errors=True)
    model.save_pretrained(d, safe_serialization=True)
    for extra in ("generation_config.json",):
        if os.path.exists(os.path.join(d, extra)):
            os.remove(os.path.join(d, extra))

    V = cfg.vocab_size
    inputs = torch.randint(0, V, (B, T), generator=gen)
    targets = torch.randint(0, V, (B, T), generator=gen)
    mask = (torch.rand(B, T, generator=gen) >= 0.2).to(torch.uint8)
    mask[:, : T // 4] = 0

    m64 = model.double()
    m64.zero_grad()
    logits = m64(input_ids=inputs).logits  # [B, T, V] float64
    nll = torch.nn.functional.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), reduction="none")
    w = mask.reshape(-1).double()
    loss = (nll * w).sum() / w.sum()
    loss.backward()

    with h5py.File(os.path.join(d, "reference.h5"), "w") as f:
        f.attrs["transformers_version"] = np.bytes_(transformers.__version__)
        f.attrs["torch_version"] = np.bytes_(torch.__version__)
        f["inputs"] = inputs.to(torch.int32).numpy()
        f["targets"] = targets.to(torch.int32).numpy()
        f["mask"] = mask.numpy()
        f["logits"] = logits.detach().float().numpy()
        f["loss"] = np.array([loss.item()], dtype=np.float32)
        g = f.create_group("grads")
        for pname, p in m64.named_parameters():
            g[pname] = p.grad.float().numpy()
        if cfg.tie_word_embeddings and "lm_head.weight" in g:
            del g["lm_head.weight"]
    print(f"{name}: loss {loss.item():.6f}, {sum(p.numel() for p in model.parameters())} parameters")
    return d


def to_v5_layout(src, dst):
    """transformers 5.x writes rope_theta and the scaling inside rope_parameters."""
    shutil.rmtree(dst, ignore_errors=True)
    os.makedirs(dst)
    for name in ("model.safetensors", "reference.h5"):  # the same model: links, not copies
        os.symlink(os.path.join("..", os.path.basename(src), name), os.path.join(dst, name))
    shutil.copy(os.path.join(src, "config.json"), dst)
    with open(os.path.join(dst, "config.json")) as f:
        c = json.load(f)
    rp = dict(c.pop("rope_scaling"))
    rp["rope_theta"] = c.pop("rope_theta")
    c["rope_parameters"] = rp
    with open(os.path.join(dst, "config.json"), "w") as f:
        json.dump(c, f, indent=2, sort_keys=True)


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "fixtures",
                                                                  "hf-families")
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(0)
    wanted = sys.argv[2:] or list(CASES)
    unknown = [w for w in wanted if w not in CASES]
    if unknown:
        sys.exit(f"unknown case(s) {unknown} for transformers {transformers.__version__}: {list(CASES)}")
    paths = {name: write_case(out_dir, name, *CASES[name]) for name in wanted}
    if "llama3-rope" in paths:
        to_v5_layout(paths["llama3-rope"], os.path.join(out_dir, "llama3-rope-v5"))


if __name__ == "__main__":
    main()
