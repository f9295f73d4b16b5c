#!/usr/bin/python3
"""Write the LoRA-on-a-quantized-base reference fixture into the directory given as argv[1] (ctest:
${TN_FIXTURES}), for tests/unit/test_lora.c:

  lora_ref.h5           a tiny Llama (GQA, untied head) whose layer matrices are quantized: attention on prime7
                        with one scale per row, MLP ternary with one scale per tensor (base/idx, base/scale,
                        base/grid per matrix; norms, embedding and head float in params/); adapters of rank 4,
                        alpha 8 on q, v, o, gate, down of every layer; inputs, targets, mask; and the reference
                        logits, per-position NLL, loss and the adapters' gradients (grads/<PEFT name>)
  lora_ref_adapter/     the same adapters as PEFT saves them (adapter_config.json, adapter_model.safetensors),
                        written here independently of trinity's writer

The base weight is the float32 product scale * grid[idx] (as trinity dequantizes); the reference forward uses
W + (alpha / r) * B @ A for every adapted linear in float64 (mathematically PEFT's x W^T + s (x A^T) B^T), and
autograd gives dL/dA and dL/dB. No dropout (a deterministic reference). Exits 77 when torch / h5py / numpy are
missing.
"""

import json
import os
import sys

try:
    import numpy as np
    import torch
    import h5py
except ImportError as e:
    print(f"SKIPPED: gen_lora.py needs python3-torch, python3-h5py, python3-numpy ({e})")
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_ref as ref  # noqa: E402
from llama_ref import LlamaConfig  # noqa: E402

CFG = LlamaConfig(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=128, vocab_size=96, max_seq_len=32,
                  rope_theta=10000.0, norm_eps=1e-5, tied_embeddings=False)
B, T, RANK, ALPHA, SEED = 2, 16, 4, 8.0, 1507
ADAPTED = ("q", "v", "o", "gate", "down")
PEFT_MODULE = {k: f"{k}_proj" for k in ref.LINEAR_KINDS}


def peft_name(layer, kind, ab):
    sub = "self_attn" if ref.KIND_GROUP[kind] == "attn" else "mlp"
    return f"base_model.model.model.layers.{layer}.{sub}.{PEFT_MODULE[kind]}.lora_{ab}.weight"


class LoraHook:
    """llama_ref.linear's `quant` hook: the adapted weight W + s * B @ A (A, B autograd leaves)."""

    def __init__(self, adapters, scaling):
        self.adapters, self.scaling = adapters, scaling

    def input(self, layer, kind, x):
        return x

    def weight(self, layer, kind, W):
        ab = self.adapters.get((layer, kind))
        if ab is None:
            return W
        A, Bm = ab
        return W + self.scaling * (Bm.to(W.dtype) @ A.to(W.dtype))


def main():
    if len(sys.argv) != 2:
        print("usage: gen_lora.py FIXTURES_DIR", file=sys.stderr)
        return 2
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    gen = torch.Generator().manual_seed(SEED)
    rng = np.random.default_rng(SEED)
    params = ref.init_params(CFG, gen)
    base = {}  # matrix name -> (idx, scale, grid)
    for name, shape in ref.param_shapes(CFG):
        if len(shape) != 2 or "layers." not in name:
            continue
        attn = "self_attn" in name
        grid = ref.grid_values("prime7" if attn else "ternary")
        idx = rng.integers(0, len(grid), size=shape).astype(np.uint8)
        scale = (rng.uniform(0.02, 0.2, size=(shape[0] if attn else 1,))).astype(np.float32)
        W = (scale[:, None] if attn else scale[0]) * grid[idx]   # float32 product
        assert W.dtype == np.float32
        params[name] = torch.from_numpy(W)
        base[name] = (idx, scale, grid)

    scaling = ALPHA / RANK
    adapters, arrays = {}, {}
    for layer in range(CFG.n_layers):
        for kind in ADAPTED:
            W = params[ref.linear_name(layer, kind)]
            out_f, in_f = W.shape
            A = (0.1 * rng.standard_normal((RANK, in_f))).astype(np.float32)
            Bm = (0.1 * rng.standard_normal((out_f, RANK))).astype(np.float32)
            arrays[(layer, kind)] = (A, Bm)
            adapters[(layer, kind)] = (torch.from_numpy(A).double().requires_grad_(True),
                                       torch.from_numpy(Bm).double().requires_grad_(True))
    inputs = torch.randint(0, CFG.vocab_size, (B, T), generator=gen, dtype=torch.int64)
    targets = torch.randint(0, CFG.vocab_size, (B, T), generator=gen, dtype=torch.int64)
    mask = (torch.rand(B, T, generator=gen) >= 0.2).to(torch.uint8)
    mask[:, :T // 4] = 0

    hook = LoraHook(adapters, scaling)
    logits = ref.forward(CFG, params, inputs, torch.float64, hook)
    nll, loss = ref.nll_and_loss(logits, targets, mask)
    loss.backward()
    with torch.no_grad():
        base_logits = ref.forward(CFG, params, inputs, torch.float64)
    effect = float((base_logits - logits).abs().max() / logits.abs().max())

    path = os.path.join(out, "lora_ref.h5")
    tmp = path + ".tmp"
    with h5py.File(tmp, "w") as f:
        ref.write_config_attrs(f, CFG)
        f.attrs["generator"] = "tests/reference/gen_lora.py"
        f.attrs["rank"] = np.int64(RANK)
        f.attrs["alpha"] = np.float64(ALPHA)
        f.attrs["adapted"] = ",".join(PEFT_MODULE[k] for k in ADAPTED)
        for name, shape in ref.param_shapes(CFG):
            if name in base:
                idx, scale, grid = base[name]
                f.create_dataset("base/idx/" + name, data=idx)
                f.create_dataset("base/scale/" + name, data=scale)
                f.create_dataset("base/grid/" + name, data=grid)
            else:
                f.create_dataset("params/" + name, data=params[name].numpy().astype(np.float32))
        for (layer, kind), (A, Bm) in adapters.items():
            f.create_dataset("adapter/" + peft_name(layer, kind, "A"), data=arrays[(layer, kind)][0])
            f.create_dataset("adapter/" + peft_name(layer, kind, "B"), data=arrays[(layer, kind)][1])
            f.create_dataset("grads/" + peft_name(layer, kind, "A"), data=A.grad.numpy().astype(np.float32))
            f.create_dataset("grads/" + peft_name(layer, kind, "B"), data=Bm.grad.numpy().astype(np.float32))
        f.create_dataset("inputs", data=inputs.numpy().astype(np.int32))
        f.create_dataset("targets", data=targets.numpy().astype(np.int32))
        f.create_dataset("mask", data=mask.numpy().astype(np.uint8))
        f.create_dataset("logits", data=logits.detach().numpy().astype(np.float32))
        f.create_dataset("nll", data=nll.detach().numpy().astype(np.float32))
        f.create_dataset("loss", data=np.array([float(loss)], dtype=np.float32))
    os.replace(tmp, path)

    # The PEFT directory, as peft.PeftModel.save_pretrained lays it out (safetensors F32, PEFT's names).
    d = os.path.join(out, "lora_ref_adapter")
    os.makedirs(d, exist_ok=True)
    ref.write_safetensors(os.path.join(d, "adapter_model.safetensors"),
                          [(peft_name(l, k, ab), arrays[(l, k)][i]) for (l, k) in sorted(arrays)
                           for i, ab in enumerate("AB")], "F32")
    config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": RANK, "lora_alpha": ALPHA, "lora_dropout": 0.0,
              "target_modules": [PEFT_MODULE[k] for k in ADAPTED], "layers_to_transform": None, "bias": "none",
              "fan_in_fan_out": False, "use_rslora": False, "use_dora": False, "base_model_name_or_path": None,
              "inference_mode": True, "modules_to_save": None}
    with open(os.path.join(d, "adapter_config.json"), "w") as fh:
        json.dump(config, fh, indent=2)
    print(f"lora_ref.h5: loss {float(loss):.6f} over {int(mask.sum())} of {B * T}; {len(adapters)} adapters of rank "
          f"{RANK}; the adapters move the logits by {effect:.2e} (relative)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
