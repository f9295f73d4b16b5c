#!/usr/bin/env bash
# trinity import from the command line. One random Llama (weights on a k/64 grid, exact in every dtype
# used) is written by numpy as: an HF dir in F32, an HF dir in BF16 (sharded), a GGUF in F32/F16 whose
# Q/K rows are permuted exactly as llama.cpp's convert_hf_to_gguf.py does (reshape(n_head, 2, hd/2, cols)
# .swapaxes(1, 2)), and llama2.c v0/v1 .bin files (same row order, per llama2.c export.py). All imports
# must give identical parameters. Then bad inputs (one error line, exit 1), usage errors (exit 2), --help,
# and the shared tiny-random-llama GGUF.
set -u
TRINITY=${TN_TRINITY:?TN_TRINITY not set}
PY=${TN_PYTHON:-/usr/bin/python3}
if ! "$PY" -c 'import numpy, h5py' 2>/dev/null; then
    echo "SKIPPED: needs python3 with numpy and h5py"
    exit 77
fi
W=$(mktemp -d /tmp/tn_cli_import.XXXXXX)
trap 'rm -rf "$W"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# Writers shared by the generators below (numpy only).
cat >"$W/tnwriters.py" <<'EOF'
import json, struct
import numpy as np

def bf16(a):
    return (a.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)

def write_st(path, tensors, dtype="F32"):
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name, a in tensors.items():
        raw = bf16(a).tobytes() if dtype == "BF16" else a.astype("<f4").tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))

def read_st(path):
    blob = open(path, "rb").read()
    n = struct.unpack("<Q", blob[:8])[0]
    out = {}
    for name, e in json.loads(blob[8:8 + n]).items():
        if name == "__metadata__":
            continue
        b, en = e["data_offsets"]
        raw = blob[8 + n + b:8 + n + en]
        if e["dtype"] == "F32":
            a = np.frombuffer(raw, "<f4")
        elif e["dtype"] == "F16":
            a = np.frombuffer(raw, "<f2").astype(np.float32)
        else:
            a = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
        out[name] = a.reshape(e["shape"]).copy()
    return out

# llama.cpp convert_hf_to_gguf.py LlamaModel.permute (llama2.c export.py permute_reverse is the same)
def permute(w, n_head):
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)

def file_order(p, c, name):
    a = p[name]
    if name.endswith("q_proj.weight"):
        return permute(a, c["num_attention_heads"])
    if name.endswith("k_proj.weight"):
        return permute(a, c["num_key_value_heads"])
    return a

def gs(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b

def kv(key, t, v):
    out = gs(key) + struct.pack("<I", t)
    if t == 4: out += struct.pack("<I", v)
    elif t == 6: out += struct.pack("<f", v)
    elif t == 8: out += gs(v)
    elif t == 9: out += struct.pack("<IQ", 8, len(v)) + b"".join(gs(x) for x in v)
    return out

SUB = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
       "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm",
       "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}

def gguf_name(name):
    top = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
           "lm_head.weight": "output.weight"}
    if name in top:
        return top[name]
    _, _, i, rest = name.split(".", 3)
    return f"blk.{i}.{SUB[rest[:-len('.weight')]]}.weight"

def write_gguf(path, p, c, f16=lambda name: False, pre=None):
    """GGUF v3, F32 tensors except F16 where f16(name); Q/K permuted like convert_hf_to_gguf.py. A byte-level
    vocabulary of t0, t1, ... without merges, with tokenizer.ggml.pre = pre when given."""
    L, H, KV = c["num_hidden_layers"], c["num_attention_heads"], c["num_key_value_heads"]
    meta = [kv("general.architecture", 8, "llama"), kv("llama.embedding_length", 4, c["hidden_size"]),
            kv("llama.block_count", 4, L), kv("llama.attention.head_count", 4, H),
            kv("llama.attention.head_count_kv", 4, KV), kv("llama.feed_forward_length", 4, c["intermediate_size"]),
            kv("llama.context_length", 4, c["max_position_embeddings"]),
            kv("llama.rope.freq_base", 6, c["rope_theta"]),
            kv("llama.attention.layer_norm_rms_epsilon", 6, c["rms_norm_eps"]),
            kv("llama.rope.dimension_count", 4, c["hidden_size"] // H),
            kv("tokenizer.ggml.model", 8, "gpt2"),
            kv("tokenizer.ggml.tokens", 9, [f"t{i}" for i in range(c["vocab_size"])]),
            kv("tokenizer.ggml.merges", 9, [])] + ([kv("tokenizer.ggml.pre", 8, pre)] if pre else [])
    infos, data = b"", b""
    for name in p:
        a = file_order(p, c, name)
        half = f16(name)
        raw = a.astype("<f2").tobytes() if half else a.astype("<f4").tobytes()
        data += b"\0" * (-len(data) % 32)
        # GGUF dims are fastest-first: a row-major [rows, cols] matrix is ne = [cols, rows]
        infos += gs(gguf_name(name)) + struct.pack("<I", a.ndim) + b"".join(struct.pack("<Q", n) for n in a.shape[::-1])
        infos += struct.pack("<IQ", 1 if half else 0, len(data))
        data += raw
    head = b"GGUF" + struct.pack("<IQQ", 3, len(p), len(meta)) + b"".join(meta) + infos
    head += b"\0" * (-len(head) % 32)
    with open(path, "wb") as f:
        f.write(head + data)

def write_llama2c(path, p, c, version):
    """llama2.c v0 (legacy_export) or v1 (version1_export) layout, Q/K in the same interleaved order."""
    L, H, KV = c["num_hidden_layers"], c["num_attention_heads"], c["num_key_value_heads"]
    dim, F, V, S = c["hidden_size"], c["intermediate_size"], c["vocab_size"], c["max_position_embeddings"]
    shared = "lm_head.weight" not in p
    def layers(key):
        return b"".join(file_order(p, c, f"model.layers.{i}.{key}.weight").astype("<f4").tobytes() for i in range(L))
    def f32(name):
        return p[name].astype("<f4").tobytes()
    head = b"" if shared else f32("lm_head.weight")
    if version == 0:
        hdr = struct.pack("<7i", dim, F, L, H, KV, V if shared else -V, S)
        body = (f32("model.embed_tokens.weight") + layers("input_layernorm") + layers("self_attn.q_proj") +
                layers("self_attn.k_proj") + layers("self_attn.v_proj") + layers("self_attn.o_proj") +
                layers("post_attention_layernorm") + layers("mlp.gate_proj") + layers("mlp.down_proj") +
                layers("mlp.up_proj") + f32("model.norm.weight") +
                np.zeros(S * (dim // H), np.float32).tobytes() + head)
    else:
        hdr = struct.pack("<Ii7iB", 0x616b3432, 1, dim, F, L, H, KV, V, S, int(shared))
        hdr += b"\0" * (256 - len(hdr))
        body = (layers("input_layernorm") + layers("post_attention_layernorm") + f32("model.norm.weight") +
                f32("model.embed_tokens.weight") + layers("self_attn.q_proj") + layers("self_attn.k_proj") +
                layers("self_attn.v_proj") + layers("self_attn.o_proj") + layers("mlp.gate_proj") +
                layers("mlp.down_proj") + layers("mlp.up_proj") + head)
    with open(path, "wb") as f:
        f.write(hdr + body)
EOF

"$PY" - "$W" <<'EOF' || { echo "generator failed"; exit 1; }
import json, os, struct, sys
import numpy as np
W = sys.argv[1]
sys.path.insert(0, W)
from tnwriters import write_st, write_gguf, write_llama2c

rng = np.random.default_rng(7)
dim, L, H, KV, F, V, S = 32, 2, 4, 2, 64, 48, 64
hd = dim // H

def grid(*shape):
    return (rng.integers(-127, 128, size=shape) / 64.0).astype(np.float32)

p = {"model.embed_tokens.weight": grid(V, dim)}
for i in range(L):
    b = f"model.layers.{i}."
    p[b + "input_layernorm.weight"] = grid(dim)
    p[b + "self_attn.q_proj.weight"] = grid(H * hd, dim)
    p[b + "self_attn.k_proj.weight"] = grid(KV * hd, dim)
    p[b + "self_attn.v_proj.weight"] = grid(KV * hd, dim)
    p[b + "self_attn.o_proj.weight"] = grid(dim, H * hd)
    p[b + "post_attention_layernorm.weight"] = grid(dim)
    p[b + "mlp.gate_proj.weight"] = grid(F, dim)
    p[b + "mlp.up_proj.weight"] = grid(F, dim)
    p[b + "mlp.down_proj.weight"] = grid(dim, F)
p["model.norm.weight"] = grid(dim)
p["lm_head.weight"] = grid(V, dim)
np.savez(os.path.join(W, "ref.npz"), **p)

config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": dim,
          "num_hidden_layers": L, "num_attention_heads": H, "num_key_value_heads": KV,
          "intermediate_size": F, "vocab_size": V, "max_position_embeddings": S, "rope_theta": 10000.0,
          "rms_norm_eps": 1e-5, "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2,
          "hidden_act": "silu"}

def hf_dir(name, dtype, shards=1):
    d = os.path.join(W, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(config, f)
    names = list(p)
    if shards == 1:
        write_st(os.path.join(d, "model.safetensors"), p, dtype)
        return d
    wm = {}
    for s in range(shards):
        fn = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = names[s::shards]
        write_st(os.path.join(d, fn), {n: p[n] for n in part}, dtype)
        wm.update({n: fn for n in part})
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": 0}, "weight_map": wm}, f)
    return d

hf_dir("hf_f32", "F32")
hf_dir("hf_bf16", "BF16", shards=3)
write_gguf(os.path.join(W, "model.gguf"), p, config, f16=lambda n: "mlp" in n)
write_gguf(os.path.join(W, "model_badpre.gguf"), p, config, pre="deepseek-coder")
write_llama2c(os.path.join(W, "v0.bin"), p, config, 0)
write_llama2c(os.path.join(W, "v1.ckpt"), p, config, 1)

# ---- bad safetensors dirs ------------------------------------------------------------------------------
good = open(os.path.join(W, "hf_f32", "model.safetensors"), "rb").read()
n = struct.unpack("<Q", good[:8])[0]
hjson = json.loads(good[8:8 + n])
def bad(name, blob=None, header=None, cfg=None):
    d = os.path.join(W, "bad_" + name)
    os.makedirs(d)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg if cfg is not None else config, f)
    if header is not None:
        h = json.dumps(header).encode()
        h += b" " * (-len(h) % 8)
        blob = struct.pack("<Q", len(h)) + h + good[8 + n:]
    with open(os.path.join(d, "model.safetensors"), "wb") as f:
        f.write(blob if blob is not None else good)

bad("truncated", blob=good[:len(good) // 2])
bad("hdrlen", blob=struct.pack("<Q", len(good) * 2) + good[8:])
bad("json", blob=struct.pack("<Q", n) + b"{\"x\": [" + good[15:])
h = dict(hjson); e = dict(h["model.norm.weight"]); e["data_offsets"] = [e["data_offsets"][0], 10**9]; h["model.norm.weight"] = e
bad("offsets", header=h)
h = dict(hjson); e = dict(h["model.norm.weight"]); e["dtype"] = "I32"; h["model.norm.weight"] = e
bad("dtype", header=h)
h = dict(hjson); e = dict(h["model.norm.weight"]); e["shape"] = [dim * 2]; h["model.norm.weight"] = e
bad("size", header=h)
h = dict(hjson); e = dict(h["lm_head.weight"]); e["shape"] = [dim, V]; h["lm_head.weight"] = e
bad("shape", header=h)
cfg = dict(config); del cfg["hidden_size"]
bad("config", cfg=cfg)
bad("yarn", cfg=dict(config, rope_scaling={"rope_type": "yarn", "factor": 4.0}))
bad("arch", cfg=dict(config, architectures=["GPTNeoXForCausalLM"]))
EOF

# ---- usage ----------------------------------------------------------------------------------------------
"$TRINITY" import --help >"$W/help.txt" 2>&1 || fail "--help exit $?"
grep -q "usage: trinity import" "$W/help.txt" || fail "--help text"
"$TRINITY" import >/dev/null 2>&1; [ $? -eq 2 ] || fail "no args should exit 2"
"$TRINITY" import "$W/hf_f32" >/dev/null 2>&1; [ $? -eq 2 ] || fail "missing -o should exit 2"
"$TRINITY" import "$W/hf_f32" -o "$W/x.h5" --bogus >/dev/null 2>&1; [ $? -eq 2 ] || fail "unknown option should exit 2"
"$TRINITY" import "$W/hf_f32" -o "$W/x.h5" --format onnx >/dev/null 2>&1; [ $? -eq 2 ] || fail "bad --format should exit 2"

# ---- the same model from five sources -------------------------------------------------------------------
run_import() { # name src [args...]
    local name=$1 src=$2
    shift 2
    if ! "$TRINITY" import "$src" -o "$W/$name.h5" "$@" >"$W/$name.out" 2>"$W/$name.err"; then
        fail "import $name: $(cat "$W/$name.err")"
        return
    fi
    grep -q "^imported .* -> $W/$name.h5\$" "$W/$name.out" || fail "import $name summary: $(cat "$W/$name.out")"
}
run_import hf_f32 "$W/hf_f32"
run_import hf_bf16 "$W/hf_bf16"
run_import gguf "$W/model.gguf"
run_import v0 "$W/v0.bin"
run_import v1 "$W/v1.ckpt" --format llama2c
grep -q "(gguf, F32+F16)" "$W/gguf.out" || fail "gguf summary dtypes: $(cat "$W/gguf.out")"
grep -q "(hf, BF16)" "$W/hf_bf16.out" || fail "hf bf16 summary: $(cat "$W/hf_bf16.out")"

"$PY" - "$W" <<'EOF' || fail "imported parameters differ"
import sys, h5py, numpy as np
W = sys.argv[1]
ref = np.load(f"{W}/ref.npz")
ok = True
for src in ["hf_f32", "hf_bf16", "gguf", "v0", "v1"]:
    with h5py.File(f"{W}/{src}.h5", "r") as f:
        names = set(f["params"].keys())
        if names != set(ref.files):
            print(src, "tensor names differ:", sorted(names ^ set(ref.files))); ok = False; continue
        for n in ref.files:
            if not np.array_equal(f["params"][n][()], ref[n]):
                print(src, n, "differs, max abs", np.abs(f["params"][n][()] - ref[n]).max()); ok = False
        c = f["config"].attrs
        want = dict(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=64, vocab_size=48, max_seq_len=64,
                    tied_embeddings=0)
        for k, v in want.items():
            if int(c[k]) != v:
                print(src, "config", k, c[k], "!=", v); ok = False
sys.exit(0 if ok else 1)
EOF

# --json
"$TRINITY" import "$W/model.gguf" -o "$W/j.h5" --json >"$W/j.out" 2>"$W/j.err" || fail "--json import"
"$PY" -c 'import json,sys; o=json.load(open(sys.argv[1])); assert o["format"]=="gguf" and o["tensors"]==21 and o["vocab_size"]==48, o' "$W/j.out" \
    || fail "--json output: $(cat "$W/j.out")"

# ---- bad inputs: exit 1 and exactly one error line --------------------------------------------------------
expect_error() { # name pattern
    local d="$W/bad_$1"
    "$TRINITY" import "$d" -o "$W/bad.h5" >"$W/bad.out" 2>"$W/bad.err"
    local rc=$?
    [ $rc -eq 1 ] || fail "bad_$1: exit $rc (want 1)"
    [ "$(wc -l <"$W/bad.err")" -eq 1 ] || fail "bad_$1: stderr is not one line: $(cat "$W/bad.err")"
    grep -q "^trinity: error: .*$2" "$W/bad.err" || fail "bad_$1: '$(cat "$W/bad.err")' lacks '$2'"
    [ ! -e "$W/bad.h5" ] || fail "bad_$1: output written"
}
expect_error truncated "past the end"
expect_error hdrlen "header length .* runs past the end of the file"
expect_error json "not valid JSON"
expect_error offsets "run past the end of the data"
expect_error dtype "dtype I32"
expect_error size "shape holds 64 x F32 = 256 bytes but data_offsets give 128"
expect_error shape "tensor 'lm_head.weight' has shape \[32, 48\], expected \[48, 32\]"
expect_error config "config.json: missing key hidden_size"
expect_error yarn "RoPE scaling type 'yarn' is not supported (default, linear, llama3)"
expect_error arch "architecture GPTNeoXForCausalLM is not supported"
# config.json describing a 7.5 GB model over a 16-byte safetensors: refused on the tensors before any
# parameter memory is allocated (the import runs under a 1 GiB address-space limit, except under
# AddressSanitizer, which reserves terabytes of address space for its shadow memory).
mkdir -p "$W/bad_huge"
"$PY" - "$W/bad_huge" <<'EOF'
import json, struct, sys
d = sys.argv[1]
json.dump({"architectures": ["LlamaForCausalLM"], "hidden_size": 4096, "num_hidden_layers": 8, "num_attention_heads": 32, "num_key_value_heads": 32,
           "intermediate_size": 11008,
           "vocab_size": 32000, "max_position_embeddings": 2048,
           "rms_norm_eps": 1e-5}, open(f"{d}/config.json", "w"))
h = json.dumps({"model.norm.weight": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
open(f"{d}/model.safetensors", "wb").write(struct.pack("<Q", len(h)) + h + bytes(16))
EOF
(fails=0
 if [ "${TN_SANITIZED:-0}" != 1 ] && (ulimit -v 1048576 && "$TRINITY" --help) >/dev/null 2>&1; then ulimit -v 1048576; fi
 expect_error huge "tensor 'model.norm.weight' has shape \\[4\\], expected \\[4096\\]"; exit $fails) || fails=$((fails + 1))
"$TRINITY" import "$W/nonexistent" -o "$W/bad.h5" 2>"$W/bad.err"; [ $? -eq 1 ] || fail "missing source should exit 1"
# a GGUF whose pre-tokenizer trinity does not implement: refused (one line, no output) unless --tokenizer
"$TRINITY" import "$W/model_badpre.gguf" -o "$W/bad.h5" 2>"$W/bad.err"; [ $? -eq 1 ] || fail "unknown pre-tokenizer should exit 1"
[ "$(wc -l <"$W/bad.err")" -eq 1 ] && grep -q "its tokenizer is not supported (.*pre-tokenizer 'deepseek-coder' is not supported); give one with --tokenizer FILE" "$W/bad.err" \
  || fail "unknown pre-tokenizer: $(cat "$W/bad.err")"
[ ! -e "$W/bad.h5" ] || fail "unknown pre-tokenizer: output written"
head -c 1000 "$W/model.gguf" >"$W/trunc.gguf"
"$TRINITY" import "$W/trunc.gguf" -o "$W/bad.h5" 2>"$W/bad.err"; [ $? -eq 1 ] || fail "truncated gguf should exit 1"
[ "$(wc -l <"$W/bad.err")" -eq 1 ] || fail "truncated gguf: $(cat "$W/bad.err")"
head -c 2000 "$W/v0.bin" >"$W/trunc.bin"
"$TRINITY" import "$W/trunc.bin" -o "$W/bad.h5" 2>"$W/bad.err"; [ $? -eq 1 ] || fail "truncated llama2.c should exit 1"

# ---- the shared tiny random Llama GGUF --------------------------------------------------------------------
TINY="${TN_SHARED_DATA:-}/tiny-random-llama-gguf/llama-2-tiny-random.gguf"
if [ -r "$TINY" ]; then
    "$TRINITY" import "$TINY" -o "$W/tiny.h5" >"$W/tiny.out" 2>"$W/tiny.err" || fail "tiny-random import: $(cat "$W/tiny.err")"
    "$PY" - "$W/tiny.h5" <<'EOF' || fail "tiny-random checkpoint"
import sys, h5py
f = h5py.File(sys.argv[1], "r")
c = f["config"].attrs
want = dict(dim=8, n_layers=1, n_heads=2, n_kv_heads=2, ffn_dim=32, vocab_size=32000, max_seq_len=4096,
            tied_embeddings=0, bos_id=1, eos_id=2)
bad = {k: c[k] for k, v in want.items() if int(c[k]) != v}
assert not bad, bad
assert abs(c["norm_eps"] - 1e-5) < 1e-9 and c["rope_theta"] == 10000.0
assert len(f["params"]) == 12 and f["params/lm_head.weight"].shape == (32000, 8)
assert f["tokenizer"].attrs["format"] in ("trinity-tokenizer", "gguf-vocab")
EOF
else
    echo "note: shared tiny-random-llama GGUF absent, skipped that part"
fi

# ---- against PyTorch: the reference fixture model as GGUF (F32, F16) and llama2.c ------------------------
# tests/reference/gen_llama.py writes HF dirs and PyTorch's loss on a shard; the same weights written as
# GGUF (Q/K permuted like llama.cpp) and as llama2.c v1 must evaluate to the same loss after import.
FIX=${TN_FIXTURES:-}
if [ -n "$FIX" ] && [ -r "$FIX/import_expected.json" ] && [ -r "$FIX/hf_f32/model.safetensors" ]; then
    "$PY" - "$W" "$FIX" <<'EOF' || fail "writing the reference model as GGUF / llama2.c"
import json, os, sys
W, FIX = sys.argv[1], sys.argv[2]
sys.path.insert(0, W)
from tnwriters import read_st, write_gguf, write_llama2c
c = json.load(open(os.path.join(FIX, "hf_f32", "config.json")))
c.setdefault("num_key_value_heads", c["num_attention_heads"])
p = read_st(os.path.join(FIX, "hf_f32", "model.safetensors"))
write_gguf(os.path.join(W, "ref_f32.gguf"), p, c)
write_gguf(os.path.join(W, "ref_f16.gguf"), p, c, f16=lambda n: True)
write_llama2c(os.path.join(W, "ref_v1.bin"), p, c, 1)
EOF
    SEQ=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["seq_len"])' "$FIX/import_expected.json")
    for pair in "ref_f32.gguf:hf_f32" "ref_f16.gguf:hf_f16" "ref_v1.bin:hf_f32" "hf_bf16:hf_bf16" "hf_sharded:hf_sharded"; do
        src=${pair%%:*} key=${pair##*:}
        case $src in ref_*) in="$W/$src" ;; *) in="$FIX/$src" ;; esac
        [ -e "$in" ] || { echo "note: $in absent"; continue; }
        "$TRINITY" import "$in" -o "$W/ref.h5" >/dev/null 2>"$W/ref.err" || { fail "import $src: $(cat "$W/ref.err")"; continue; }
        if ! "$TRINITY" eval "$W/ref.h5" --data "$FIX/import_tokens.h5" --seq-len "$SEQ" --json >"$W/ref.json" 2>"$W/ref.err"; then
            fail "eval $src: $(cat "$W/ref.err")"
            continue
        fi
        "$PY" - "$W/ref.json" "$FIX/import_expected.json" "$key" "$src" <<'EOF' || fail "loss of $src differs from PyTorch's ($key)"
import json, sys
got = json.load(open(sys.argv[1]))
want = json.load(open(sys.argv[2]))[sys.argv[3]]
rel = abs(got["loss"] - want["loss"]) / abs(want["loss"])
print(f"  {sys.argv[4]}: trinity loss {got['loss']:.9f}, torch ({sys.argv[3]}) {want['loss']:.9f}, rel {rel:.1e}")
sys.exit(0 if rel < 1e-5 and got["tokens"] == want["tokens"] else 1)
EOF
    done
else
    echo "note: reference fixtures absent, skipped the import-then-eval check"
fi

if [ $fails -ne 0 ]; then
    echo "$fails failure(s)"
    exit 1
fi
echo "all import CLI checks passed"
