#!/usr/bin/python3
"""Write the Llama reference fixtures into the directory given as argv[1] (ctest: ${TN_FIXTURES}).

  llama_gqa_untied.h5, llama_tied.h5   forward/backward references for tests/unit/test_llama_ref.c
  hf_f32/ hf_f16/ hf_bf16/ hf_sharded/ one random model as Hugging Face directories (for `trinity import`)
  import_tokens.h5                     a trinity text shard to evaluate that model on
  import_expected.json                 PyTorch's masked mean loss on it, per directory

Deterministic (fixed seeds); see tests/reference/README.md. Exits 77 when torch / h5py / numpy are missing.
"""

import json
import math
import os
import sys
import time

try:
    import numpy as np
    import torch
    import h5py
except ImportError as e:  # ctest reports 77 as skipped; tests needing these fixtures then skip too
    print(f"SKIPPED: gen_llama.py needs python3-torch, python3-h5py, python3-numpy ({e})")
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_ref as ref  # noqa: E402
from llama_ref import LlamaConfig  # noqa: E402

# Case 1: grouped-query attention (2 query heads per kv head), untied head, theta 1e4, head dim 16.
CASE_GQA_UNTIED = dict(
    cfg=LlamaConfig(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=176, vocab_size=256, max_seq_len=128,
                    rope_theta=10000.0, norm_eps=1e-5, tied_embeddings=False),
    B=2, T=64, seed=1234)
# Case 2: tied head, n_kv_heads == n_heads, Llama-3 theta, eps 1e-6, head dim 32, T not a power of two.
CASE_TIED = dict(
    cfg=LlamaConfig(dim=96, n_layers=2, n_heads=3, n_kv_heads=3, ffn_dim=160, vocab_size=320, max_seq_len=96,
                    rope_theta=500000.0, norm_eps=1e-6, tied_embeddings=True),
    B=2, T=72, seed=5678)

# The import model: untied, GQA, evaluated with windows of IMPORT_SEQ_LEN (+1) tokens.
IMPORT_CFG = LlamaConfig(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=128, vocab_size=256,
                         max_seq_len=256, rope_theta=10000.0, norm_eps=1e-5, tied_embeddings=False,
                         bos_id=1, eos_id=2)
IMPORT_SEQ_LEN = 64
IMPORT_WINDOWS = 4


def make_mask(gen, B, T):
    """1 = counted. The first quarter of every row is masked out (a prompt), plus ~20% random zeros."""
    m = (torch.rand(B, T, generator=gen) >= 0.2).to(torch.uint8)
    m[:, :T // 4] = 0
    return m


def write_reference_case(path, case):
    cfg, B, T = case["cfg"], case["B"], case["T"]
    gen = torch.Generator().manual_seed(case["seed"])
    params = ref.init_params(cfg, gen)
    inputs = torch.randint(0, cfg.vocab_size, (B, T), generator=gen, dtype=torch.int64)
    targets = torch.randint(0, cfg.vocab_size, (B, T), generator=gen, dtype=torch.int64)
    mask = make_mask(gen, B, T)
    logits, nll, loss, grads = ref.loss_and_grads(cfg, params, inputs, targets, mask, torch.float64)

    tmp = path + ".tmp"
    with h5py.File(tmp, "w") as f:
        ref.write_config_attrs(f, cfg)
        f.attrs["generator"] = "tests/reference/gen_llama.py"
        for name, _ in ref.param_shapes(cfg):
            f.create_dataset("params/" + name, data=params[name].numpy().astype(np.float32))
            f.create_dataset("grads/" + name, data=grads[name].numpy().astype(np.float32))
        f.create_dataset("inputs", data=inputs.numpy().astype(np.int32))
        f.create_dataset("targets", data=targets.numpy().astype(np.int32))
        f.create_dataset("mask", data=mask.numpy().astype(np.uint8))
        f.create_dataset("logits", data=logits.numpy().astype(np.float32))
        f.create_dataset("nll", data=nll.numpy().astype(np.float32))
        f.create_dataset("loss", data=np.array([float(loss)], dtype=np.float32))
    os.replace(tmp, path)
    gmax = {k: float(v.abs().max()) for k, v in grads.items()}
    print(f"{os.path.basename(path)}: loss {float(loss):.6f} over {int(mask.sum())} of {B * T} positions; "
          f"|grad| max per tensor from {min(gmax.values()):.2e} to {max(gmax.values()):.2e}")


def import_tokens(gen, cfg, n_tokens):
    """Documents of random lengths, each BOS + random ids (never BOS/EOS) + EOS, cut to n_tokens.
    loss_mask is 1 except on BOS tokens (a BOS is never a prediction target), so eval's masking matters."""
    toks, offsets = [], [0]
    while len(toks) < n_tokens:
        n = int(torch.randint(20, 90, (1,), generator=gen))
        body = torch.randint(3, cfg.vocab_size, (n,), generator=gen).tolist()
        toks += [cfg.bos_id] + body + [cfg.eos_id]
        offsets.append(len(toks))
    toks = toks[:n_tokens]
    offsets = [o for o in offsets if o < n_tokens] + [n_tokens]
    mask = [0 if t == cfg.bos_id else 1 for t in toks]
    return np.array(toks, dtype=np.uint32), np.array(mask, dtype=np.uint8), np.array(offsets, dtype=np.uint64)


def write_import_fixtures(out):
    cfg = IMPORT_CFG
    gen = torch.Generator().manual_seed(4242)
    params = ref.init_params(cfg, gen)
    params = {k: v.numpy() for k, v in params.items()}
    n_tokens = IMPORT_WINDOWS * IMPORT_SEQ_LEN + 1
    tokens, loss_mask, offsets = import_tokens(gen, cfg, n_tokens)
    ref.write_shard(os.path.join(out, "import_tokens.h5"), tokens, loss_mask, offsets, cfg.vocab_size,
                    cfg.bos_id, cfg.eos_id, kind="text")

    expected = {
        "shard": "import_tokens.h5",
        "seq_len": IMPORT_SEQ_LEN,
        "windows": IMPORT_WINDOWS,
        "definition": "windows of seq_len+1 tokens with stride seq_len (inputs w[0:T], targets w[1:T+1]); "
                      "loss = mean NLL over every target whose loss_mask is 1, over all windows; ppl = exp(loss)",
        "config": ref.config_dict(cfg),
    }
    for dirname, dtype, shards in (("hf_f32", "F32", 1), ("hf_f16", "F16", 1), ("hf_bf16", "BF16", 1),
                                   ("hf_sharded", "F32", 2)):
        ref.write_hf_dir(os.path.join(out, dirname), cfg, params, dtype, n_shards=shards)
        stored = {k: torch.from_numpy(ref.round_to_dtype(v, dtype)) for k, v in params.items()}
        loss, count = ref.windowed_loss(cfg, stored, tokens, loss_mask, IMPORT_SEQ_LEN)
        expected[dirname] = {"dtype": dtype, "shards": shards, "loss": loss, "ppl": math.exp(loss),
                             "tokens": count}
        print(f"{dirname}: loss {loss:.7f} ppl {math.exp(loss):.5f} over {count} tokens")
    with open(os.path.join(out, "import_expected.json"), "w") as f:
        json.dump(expected, f, indent=2)


def main():
    if len(sys.argv) != 2:
        print("usage: gen_llama.py FIXTURES_DIR", file=sys.stderr)
        return 2
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    t0 = time.time()
    ref.self_check()
    write_reference_case(os.path.join(out, "llama_gqa_untied.h5"), CASE_GQA_UNTIED)
    write_reference_case(os.path.join(out, "llama_tied.h5"), CASE_TIED)
    write_import_fixtures(out)
    print(f"gen_llama.py: fixtures in {out} ({time.time() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
