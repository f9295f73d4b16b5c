"""Write a small text shard whose tokens follow learnable patterns (so a tiny model's loss falls fast).

usage: make_pattern_shard.py OUT.h5 N_TOKENS VOCAB SEED [--bad-token]
Sequences are random walks with a fixed step per document: token[t+1] = (token[t] + step) % vocab.
--bad-token puts one id >= vocab in the shard's tokens (while vocab_size says vocab) to test rejection.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "reference"))
import numpy as np  # noqa: E402
from llama_ref import write_shard  # noqa: E402

out, n, vocab, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = np.random.default_rng(seed)
toks, offsets = [], [0]
while len(toks) < n:
    length = int(rng.integers(20, 60))
    step = int(rng.integers(1, 4))
    start = int(rng.integers(0, vocab))
    toks.extend((start + step * i) % vocab for i in range(length))
    offsets.append(len(toks))
toks = np.array(toks[:n], dtype=np.uint32)
offsets = [o for o in offsets if o < n] + [n]
if "--bad-token" in sys.argv:
    toks[n // 2] = vocab + 5
write_shard(out, toks, np.ones(n, dtype=np.uint8), np.array(offsets, dtype=np.uint64), vocab, -1, -1)
