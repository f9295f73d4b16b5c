#!/usr/bin/env python3
"""Proof that `trinity export --format hf` writes directories transformers runs as trinity does (not CI:
transformers and torch are large; docs/EXPORT.md quotes the numbers this prints).

For each model: `trinity export --format hf` (f32 and bf16), load the directory with AutoModelForCausalLM
(float32, eager attention), compute the mean masked NLL over a trinity shard in exactly `trinity eval`'s
windows (non-overlapping, seq-len T, the last one partial), and compare with `trinity eval --json` on the same
shard: |diff| / loss must be <= 1e-5 for f32 (bf16: reported). For each tokenizer: AutoTokenizer on the
exported directory must give trinity's ids on every WikiText-2 test line (and llama.cpp's expected ids on
its test strings, which trinity matches: tests/unit/test_tok_vectors.c), and add BOS exactly when trinity does.

  models      fixture:llama3-rope, fixture:qwen2-bias, fixture:qwen3-qknorm (tests/fixtures/hf-families,
              imported; random-token shard), smollm2 (../shared/data/smollm2 GGUF imported; WikiText-2 test
              shard made by `trinity prepare text`; dense f32 + bf16, and --quantize ternary compared with the
              synthetic .trin under `trinity eval` exact mode)
  tokenizers  tok:<vocab> for ../shared/data/llama-cpp-vocab/ggml-vocab-<vocab>.gguf (a tiny model with that
              vocabulary is built, imported with --tokenizer and exported), and SmolLM2's

usage: /tmp/hfvenv/bin/python scripts/check-hf-export.py [--trinity BUILD/trinity] [--work DIR] [CASE ...]
(default: every case this transformers can load; Qwen3 needs transformers >= 4.51: /tmp/hf5venv).
Exit status 1 when a comparison fails.
"""
import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time

import h5py
import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
SHARED = os.path.abspath(os.path.join(ROOT, "..", "shared", "data"))
VOCABS = ["gpt-2", "llama-bpe", "qwen2", "qwen35", "llama-spm", "phi-3", "mpt", "starcoder", "refact"]
SEP = "\n__ggml_vocab_test__\n"
failures = []


def sh(*args, **kw):
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))}: exit {r.returncode}\n{r.stderr}")
    return r.stdout


def check(ok, what):
    print(("  ok   " if ok else "  FAIL ") + what, flush=True)
    if not ok:
        failures.append(what)


def export(trinity, ckpt, out, *opts):
    if os.path.exists(out):
        sh("rm", "-rf", out)
    return json.loads(sh(trinity, "export", ckpt, "-o", out, "--format", "hf", "--json", *opts))


def trinity_eval(trinity, model, shard, seq_len, max_windows):
    args = [trinity, "eval", model, "--data", shard, "--seq-len", seq_len, "--json"]
    if max_windows:
        args += ["--max-windows", max_windows]
    return json.loads(sh(*args))


def hf_loss(model_dir, shard, seq_len, max_windows):
    """Mean NLL over trinity's eval windows (train/eval.c tn_eval_shard), float64 sums."""
    with h5py.File(shard, "r") as f:
        tokens = np.asarray(f["tokens"], dtype=np.int64)
        mask = np.asarray(f["loss_mask"], dtype=np.int64)
    model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32, attn_implementation="eager")
    model.eval()
    n = len(tokens)
    nw = (n - 2) // seq_len + 1
    if max_windows:
        nw = min(nw, max_windows)
    total, count = 0.0, 0
    with torch.no_grad():
        for w in range(nw):
            start = w * seq_len
            length = min(n - start, seq_len + 1)
            inp = torch.tensor(tokens[start:start + length - 1])[None]
            tgt = torch.tensor(tokens[start + 1:start + length])
            m = torch.tensor(mask[start + 1:start + length]).bool()
            logits = model(inp).logits[0].float()
            nll = -torch.log_softmax(logits, dim=-1).gather(1, tgt[:, None])[:, 0]
            total += float(nll[m].double().sum())
            count += int(m.sum())
    return total / count, count


def compare_model(name, trinity, ckpt, ref_model, shard, seq_len, max_windows, work, quantize=None):
    """Export ckpt as f32 and bf16; transformers' loss vs `trinity eval` of ref_model (ckpt or a .trin)."""
    ref = trinity_eval(trinity, ref_model, shard, seq_len, max_windows)
    results = {}
    for dtype in ("f32", "bf16"):
        out = os.path.join(work, f"{name}-{dtype}")
        opts = ["--hf-dtype", dtype] + (["--quantize", quantize] if quantize else [])
        rep = export(trinity, ckpt, out, *opts)
        t0 = time.time()
        loss, count = hf_loss(out, shard, seq_len, max_windows)
        rel = abs(loss - ref["loss"]) / abs(ref["loss"])
        results[dtype] = rel
        print(f"  {name} {dtype}: {rep['architecture']} {rep['kind']} {rep['tensors']} tensors; transformers loss "
              f"{loss:.8f} over {count} tokens ({time.time() - t0:.0f}s), trinity eval {ref['loss']:.8f} over "
              f"{ref['tokens']} tokens: relative difference {rel:.2e}", flush=True)
        check(count == ref["tokens"], f"{name} {dtype}: same token count")
        if dtype == "f32":
            check(rel <= 1e-5, f"{name} f32: transformers loss within 1e-5 of trinity eval ({rel:.2e})")
    return results


def random_shard(path, vocab, n, seed):
    rng = np.random.default_rng(seed)
    toks = rng.integers(0, vocab, n).astype(np.uint32)
    with h5py.File(path, "w") as f:
        f.attrs.update(format="trinity-shard", version=1, vocab_size=vocab, bos_id=-1, eos_id=-1,
                       tokenizer_sha256="", kind="text", template="")
        f.create_dataset("tokens", data=toks)
        f.create_dataset("loss_mask", data=np.ones(n, np.uint8))
        f.create_dataset("doc_offsets", data=np.array([0, n], np.uint64))


def case_fixture(name, trinity, work):
    src = os.path.join(ROOT, "tests", "fixtures", "hf-families", name)
    cfg = json.load(open(os.path.join(src, "config.json")))
    ckpt = os.path.join(work, f"{name}.h5")
    sh(trinity, "import", src, "-o", ckpt)
    shard = os.path.join(work, f"{name}-shard.h5")
    T = min(64, cfg["max_position_embeddings"])
    random_shard(shard, cfg["vocab_size"], 4 * T + 9, 7)
    return compare_model(name, trinity, ckpt, ckpt, shard, T, 0, work)


def smollm2_ckpt(trinity, work):
    ckpt = os.path.join(work, "smollm2.h5")
    if not os.path.exists(ckpt):
        sh(trinity, "import", os.path.join(SHARED, "smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"), "-o", ckpt)
    return ckpt


def case_smollm2(trinity, work, windows):
    ckpt = smollm2_ckpt(trinity, work)
    shard = os.path.join(work, "smollm2-wiki.h5")
    if not os.path.exists(shard):
        sh(trinity, "prepare", "text", "--tokenizer", ckpt, "--in", os.path.join(SHARED, "wikitext2", "wiki.test.raw"),
           "-o", shard, "--doc-split", "heading")
    res = compare_model("smollm2", trinity, ckpt, ckpt, shard, 512, windows, work)
    trin = os.path.join(work, "smollm2-ternary.trin")
    sh(trinity, "export", ckpt, "-o", trin, "--quantize", "ternary")
    res_t = compare_model("smollm2-ternary", trinity, ckpt, trin, shard, 512, windows, work, quantize="ternary")
    return {"dense": res, "ternary": res_t}


def tiny_hf_model(path, vocab):
    """A one-layer Llama of width 8 with `vocab` rows: only its vocabulary size matters."""
    from safetensors.torch import save_file
    os.makedirs(path, exist_ok=True)
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 8, "intermediate_size": 16,
           "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2, "vocab_size": vocab,
           "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "tie_word_embeddings": True}
    json.dump(cfg, open(os.path.join(path, "config.json"), "w"))
    g = torch.Generator().manual_seed(0)
    t = {"model.embed_tokens.weight": torch.randn(vocab, 8, generator=g) * 0.02, "model.norm.weight": torch.ones(8)}
    for k, shape in [("self_attn.q_proj", (8, 8)), ("self_attn.k_proj", (8, 8)), ("self_attn.v_proj", (8, 8)),
                     ("self_attn.o_proj", (8, 8)), ("mlp.gate_proj", (16, 8)), ("mlp.up_proj", (16, 8)),
                     ("mlp.down_proj", (8, 16))]:
        t[f"model.layers.0.{k}.weight"] = torch.randn(*shape, generator=g) * 0.02
    t["model.layers.0.input_layernorm.weight"] = torch.ones(8)
    t["model.layers.0.post_attention_layernorm.weight"] = torch.ones(8)
    save_file(t, os.path.join(path, "model.safetensors"), metadata={"format": "pt"})


def compare_tokenizer(name, trinity, tok_source, hf_dir, vectors):
    """AutoTokenizer(hf_dir) vs trinity's tokenizer tok_source on WikiText lines (and llama.cpp's vectors)."""
    tok = AutoTokenizer.from_pretrained(hf_dir)
    wiki = os.path.join(SHARED, "wikitext2", "wiki.test.raw")
    lines = open(wiki, encoding="utf-8").read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    tri = sh(trinity, "tokenize", "--tokenizer", tok_source, "--in", wiki).split("\n")
    tri = [[int(x) for x in l.split()] for l in tri[:len(lines)]]
    hf = [tok(l, add_special_tokens=False)["input_ids"] for l in lines]
    bad = [i for i in range(len(lines)) if hf[i] != tri[i]]
    for i in bad[:2]:
        print(f"    line {i} {lines[i][:60]!r}\n      trinity {tri[i][:20]}\n      hf      {hf[i][:20]}")
    check(not bad, f"{name}: AutoTokenizer ids equal trinity's on {len(lines)} WikiText lines ({len(bad)} differ)")
    info = dict(l.split(" ", 1) for l in sh(trinity, "tokenize", "--tokenizer", tok_source, "--info").strip().split("\n"))
    adds_bos = info.get("adds_bos") == "1"
    bos = int(info["bos_id"])
    with_special = tok("Hello world")["input_ids"]
    plain = tok("Hello world", add_special_tokens=False)["input_ids"]
    check(with_special == ([bos] if adds_bos else []) + plain, f"{name}: BOS added {'' if adds_bos else 'not '}as trinity")
    if tok.chat_template and importlib.util.find_spec("jinja2") is None:
        print(f"  skip {name}: chat template check (jinja2 is not installed for this python)")
    elif tok.chat_template:
        # the chat template renders, and the special tokens it writes come out as single tokens
        msgs = [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello!"}]
        text = tok.apply_chat_template(msgs, tokenize=False)
        ids = tok(text, add_special_tokens=False)["input_ids"]
        specials = [t for t in tok.all_special_tokens + [a.content for a in tok.added_tokens_decoder.values() if a.special]
                    if t in text]
        missing = [t for t in specials if tok.convert_tokens_to_ids(t) not in ids]
        check(specials and not missing, f"{name}: chat template renders with {sorted(set(specials))} as single tokens")
    if vectors and os.path.exists(vectors + ".inp"):
        inp = open(vectors + ".inp", encoding="utf-8").read().split(SEP)[:-1]
        want = [[int(x) for x in l.split()] for l in open(vectors + ".out", encoding="utf-8").read().split("\n")[:len(inp)]]
        got = [tok(s, add_special_tokens=False)["input_ids"] for s in inp]
        vb = [i for i in range(len(inp)) if got[i] != want[i]]
        for i in vb[:2]:
            print(f"    case {i} {inp[i][:60]!r}\n      llama.cpp {want[i][:20]}\n      hf        {got[i][:20]}")
        check(not vb, f"{name}: AutoTokenizer ids equal llama.cpp's on {len(inp)} test strings ({len(vb)} differ)")
        return len(bad) + len(vb)
    return len(bad)


def case_tok(vocab, trinity, work):
    gguf = os.path.join(SHARED, "llama-cpp-vocab", f"ggml-vocab-{vocab}.gguf")
    info = dict(l.split(" ", 1) for l in sh(trinity, "tokenize", "--tokenizer", gguf, "--info").strip().split("\n"))
    n = int(info["vocab_size"])
    tiny = os.path.join(work, f"tiny-{vocab}")
    tiny_hf_model(tiny, n)
    ckpt = os.path.join(work, f"tiny-{vocab}.h5")
    sh(trinity, "import", tiny, "-o", ckpt, "--tokenizer", gguf)
    out = os.path.join(work, f"tok-{vocab}")
    rep = export(trinity, ckpt, out)
    print(f"  tok:{vocab}: {rep['tokenizer']}")
    return compare_tokenizer(f"tok:{vocab}", trinity, gguf, out, gguf)


def case_tok_smollm2(trinity, work):
    ckpt = smollm2_ckpt(trinity, work)
    out = os.path.join(work, "smollm2-tok")
    rep = export(trinity, ckpt, out)
    print(f"  smollm2: {rep['tokenizer']}")
    return compare_tokenizer("tok:smollm2", trinity, ckpt, out, None)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trinity", default=os.environ.get("TN_TRINITY", os.path.join(ROOT, "build", "trinity")))
    ap.add_argument("--work", default="/tmp/trinity-hf-export-check")
    ap.add_argument("--windows", type=int, default=8, help="SmolLM2: eval windows of 512 tokens (default 8)")
    ap.add_argument("cases", nargs="*")
    a = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    os.makedirs(a.work, exist_ok=True)
    new_tf = tuple(int(x) for x in transformers.__version__.split(".")[:2]) >= (4, 51)
    cases = a.cases or (["fixture:llama3-rope", "fixture:qwen2-bias"] + (["fixture:qwen3-qknorm"] if new_tf else []) +
                        ["smollm2", "tok:smollm2"] + [f"tok:{v}" for v in VOCABS])
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs; trinity {a.trinity}", flush=True)
    for c in cases:
        print(c, flush=True)
        t0 = time.time()
        if c.startswith("fixture:"):
            case_fixture(c.split(":", 1)[1], a.trinity, a.work)
        elif c == "smollm2":
            case_smollm2(a.trinity, a.work, a.windows)
        elif c == "tok:smollm2":
            case_tok_smollm2(a.trinity, a.work)
        elif c.startswith("tok:"):
            case_tok(c.split(":", 1)[1], a.trinity, a.work)
        else:
            sys.exit(f"unknown case {c}")
        print(f"  ({time.time() - t0:.0f}s)", flush=True)
    print("all passed" if not failures else f"{len(failures)} FAILED: " + "; ".join(failures))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
