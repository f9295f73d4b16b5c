#!/usr/bin/python3
"""Write the quantized-training (STE) reference fixtures into the directory given as argv[1] (ctest:
${TN_FIXTURES}), for tests/unit/test_llama_ste.c:

  llama_ste_ternary.h5    (a) ternary, absmean per tensor, lambda 1, attn + mlp, GQA, untied head
  llama_ste_prime7_act.h5 (b) prime7, std per row, lambda 0.5, attn + mlp + head, untied, act_bits 8
  llama_ste_tied_head.h5  (c) tied embeddings, head quantized (ternary, absmean per tensor, lambda 1)

The forward uses W_f = W + lambda (W_q - W) for the selected linears with a straight-through estimator, so
the stored gradients are dLoss/d(shadow weight); see llama_ref.STEQuant and tests/reference/README.md.
Deterministic (fixed seeds, a deterministic seed search); exits 77 when torch / h5py / numpy are missing.
"""

import math
import os
import sys
import time

try:
    import numpy as np
    import torch
    import h5py
except ImportError as e:  # ctest reports 77 as skipped; the test that needs these fixtures then skips too
    print(f"SKIPPED: gen_llama_ste.py needs python3-torch, python3-h5py, python3-numpy ({e})")
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_ref as ref  # noqa: E402
from llama_ref import LlamaConfig  # noqa: E402

# A snapping decision must not change when the scale moves by this many float32 ulps (C sums in the same
# order, so its scale is the same float; the margin is insurance, and it also excludes exact ties).
FRAGILE_ULPS = 4
# Activation quantization: every x * 127 / max|x| must be at least this far from a half-integer (a rounding
# boundary), and at least ACT_MARGIN_FACTOR times the largest difference between the float64 reference and
# a float32 PyTorch run of the same model (a stand-in for C's float32 error, which is of the same size).
ACT_MARGIN_MIN = 1e-3
ACT_MARGIN_FACTOR = 20.0
MAX_SEED_TRIES = 4000

CASES = [
    # (a) The dense gqa_untied shape, ternary / absmean per tensor, fully quantized attention and MLP.
    dict(file="llama_ste_ternary.h5",
         cfg=LlamaConfig(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=176, vocab_size=256, max_seq_len=128,
                         rope_theta=10000.0, norm_eps=1e-5, tied_embeddings=False),
         B=2, T=64, seed=2401,
         quant=dict(grid="ternary", scale="absmean", per_row=0, lam=1.0, layers=("attn", "mlp"), act_bits=0)),
    # (b) Trinity's grid with per-row std, half-way blend, head quantized too, int8 activations. Small,
    # because activation rounding is discontinuous: every element of every quantized input must stay away
    # from a rounding boundary (see ACT_MARGIN_MIN), which is only likely with a few thousand elements.
    dict(file="llama_ste_prime7_act.h5",
         cfg=LlamaConfig(dim=16, n_layers=2, n_heads=2, n_kv_heads=1, ffn_dim=32, vocab_size=48, max_seq_len=16,
                         rope_theta=10000.0, norm_eps=1e-5, tied_embeddings=False),
         B=2, T=8, seed=3100,
         quant=dict(grid="prime7", scale="std", per_row=1, lam=0.5, layers=("attn", "mlp", "head"), act_bits=8)),
    # (c) Tied embeddings, only the head quantized: the embedding's shadow gradient is the lookup's
    # gradient plus the straight-through gradient of the quantized head.
    dict(file="llama_ste_tied_head.h5",
         cfg=LlamaConfig(dim=96, n_layers=2, n_heads=3, n_kv_heads=3, ffn_dim=160, vocab_size=320, max_seq_len=96,
                         rope_theta=500000.0, norm_eps=1e-6, tied_embeddings=True),
         B=2, T=72, seed=5700,
         quant=dict(grid="ternary", scale="absmean", per_row=0, lam=1.0, layers=("head",), act_bits=0)),
]


def make_mask(gen, B, T):
    """1 = counted. The first quarter of every row is masked out (a prompt), plus ~20% random zeros."""
    m = (torch.rand(B, T, generator=gen) >= 0.2).to(torch.uint8)
    m[:, :T // 4] = 0
    return m


def new_quant(q, memo=None):
    return ref.STEQuant(q["grid"], q["scale"], q["per_row"], q["lam"], q["layers"], q["act_bits"], memo)


def draw(case, seed, data_seed):
    """Parameters from `seed`; inputs, targets and mask from `data_seed`."""
    cfg, B, T = case["cfg"], case["B"], case["T"]
    params = ref.init_params(cfg, torch.Generator().manual_seed(seed))
    gen = torch.Generator().manual_seed(data_seed)
    inputs = torch.randint(0, cfg.vocab_size, (B, T), generator=gen, dtype=torch.int64)
    targets = torch.randint(0, cfg.vocab_size, (B, T), generator=gen, dtype=torch.int64)
    mask = make_mask(gen, B, T)
    return params, inputs, targets, mask


def snaps_robust(case, params, inputs, memo):
    """No snapping decision changes when the scale moves by FRAGILE_ULPS ulps (this excludes ties too)."""
    q = new_quant(case["quant"], memo)
    with torch.no_grad():
        ref.forward(case["cfg"], params, inputs, torch.float64, q)
    return sum(int(r["fragile"].sum()) for r in q.snaps.values()) == 0


def act_codes_robust(case, params, inputs, memo):
    """(ok, margin, dev32): every activation code far from a rounding boundary and the same in a float32 run."""
    q64, q32 = new_quant(case["quant"], memo), new_quant(case["quant"], memo)
    with torch.no_grad():
        ref.forward(case["cfg"], params, inputs, torch.float64, q64)
        margin = q64.act_margin()
        if margin < ACT_MARGIN_MIN:
            return False, margin, math.nan
        ref.forward(case["cfg"], params, inputs, torch.float32, q32)
    assert [a[0] for a in q32.acts] == [a[0] for a in q64.acts]
    dev32 = max(float((a[2].double() - b[2]).abs().max()) for a, b in zip(q32.acts, q64.acts))
    same = all(torch.equal(a[1].double(), b[1]) for a, b in zip(q32.acts, q64.acts))
    return same and margin >= ACT_MARGIN_FACTOR * dev32, margin, dev32


def choose(case):
    """The first parameter seed (from case["seed"]) whose snapping is robust, then the first data seed (from
    the same number) whose activation codes are robust. Deterministic."""
    memo = {}
    for seed in range(case["seed"], case["seed"] + 100):
        params, inputs, _, _ = draw(case, seed, seed)
        if snaps_robust(case, params, inputs, memo):
            break
    else:
        raise RuntimeError(f"{case['file']}: no parameter seed with robust snapping")
    info = dict(seed=seed, data_seed=seed, tries=1, margin=math.nan, dev32=math.nan)
    if case["quant"]["act_bits"] != 8:
        return info
    for tries in range(1, MAX_SEED_TRIES + 1):
        data_seed = seed + tries - 1
        params, inputs, _, _ = draw(case, seed, data_seed)
        ok, margin, dev32 = act_codes_robust(case, params, inputs, memo)
        if ok:
            return dict(info, data_seed=data_seed, tries=tries, margin=margin, dev32=dev32)
    raise RuntimeError(f"{case['file']}: no data seed with robust activation codes in {MAX_SEED_TRIES} tries")


def write_case(out, case):
    cfg, B, T, q = case["cfg"], case["B"], case["T"], case["quant"]
    info = choose(case)
    params, inputs, targets, mask = draw(case, info["seed"], info["data_seed"])

    quant = new_quant(q)
    logits, nll, loss, grads = ref.loss_and_grads(cfg, params, inputs, targets, mask, torch.float64, quant)
    # How much quantization matters: the dense model's logits on the same parameters.
    with torch.no_grad():
        dense = ref.forward(cfg, params, inputs)
    dense_rel = float((dense - logits).abs().max() / logits.abs().max())

    path = os.path.join(out, case["file"])
    tmp = path + ".tmp"
    with h5py.File(tmp, "w") as f:
        ref.write_config_attrs(f, cfg)
        f.attrs["generator"] = "tests/reference/gen_llama_ste.py"
        f.attrs["grid"] = q["grid"]
        f.attrs["scale"] = q["scale"]
        f.attrs["per_row"] = np.int64(q["per_row"])
        f.attrs["lambda"] = np.float64(q["lam"])
        f.attrs["layers"] = ",".join(q["layers"])
        f.attrs["act_bits"] = np.int64(q["act_bits"])
        f.attrs["seed"] = np.int64(info["seed"])
        f.attrs["data_seed"] = np.int64(info["data_seed"])
        f.attrs["act_margin"] = np.float64(info["margin"] if q["act_bits"] == 8 else 0.0)
        f.attrs["dense_logits_rel_diff"] = np.float64(dense_rel)
        for name, _ in ref.param_shapes(cfg):
            f.create_dataset("params/" + name, data=params[name].numpy().astype(np.float32))
            f.create_dataset("grads/" + name, data=grads[name].numpy().astype(np.float32))
        # What the forward used for each quantized linear, under the name of its own matrix ("lm_head.weight"
        # for the head, also when tied): W_f (float32, exactly), grid indices, scales.
        for (layer, kind), rec in sorted(quant.snaps.items()):
            name = ref.linear_name(layer, kind)
            f.create_dataset("wf/" + name, data=rec["Wf"].numpy().astype(np.float32))
            f.create_dataset("idx/" + name, data=rec["idx"].astype(np.uint8))
            f.create_dataset("scales/" + name, data=rec["scales"].astype(np.float32))
        f.create_dataset("inputs", data=inputs.numpy().astype(np.int32))
        f.create_dataset("targets", data=targets.numpy().astype(np.int32))
        f.create_dataset("mask", data=mask.numpy().astype(np.uint8))
        f.create_dataset("logits", data=logits.numpy().astype(np.float32))
        f.create_dataset("nll", data=nll.numpy().astype(np.float32))
        f.create_dataset("loss", data=np.array([float(loss)], dtype=np.float32))
    os.replace(tmp, path)

    n_q = sum(r["idx"].size for r in quant.snaps.values())
    hist = np.bincount(np.concatenate([r["idx"].ravel() for r in quant.snaps.values()]), minlength=len(quant.grid))
    act = ""
    if q["act_bits"] == 8:
        n_act = sum(a[2].numel() for a in quant.acts)
        act = (f"; {n_act} act values, margin {info['margin']:.2e} (float32 run dev {info['dev32']:.1e}), "
               f"data seed {info['data_seed']} ({info['tries']} tries)")
    print(f"{case['file']}: seed {info['seed']}; loss {float(loss):.6f} over {int(mask.sum())} of {B * T}; "
          f"{n_q} quantized weights, grid histogram {hist.tolist()}; dense logits differ by {dense_rel:.2e}{act}")


def main():
    if len(sys.argv) != 2:
        print("usage: gen_llama_ste.py FIXTURES_DIR", file=sys.stderr)
        return 2
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    t0 = time.time()
    ref.self_check_quant()
    for case in CASES:
        write_case(out, case)
    print(f"gen_llama_ste.py: fixtures in {out} ({time.time() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
