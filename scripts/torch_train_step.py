"""The PyTorch side of scripts/bench-train-vs-torch.sh: one training step (forward, masked-mean
cross-entropy, backward, AdamW) of a Llama with the SmolLM2-135M shape, in float32 on CPU, written the
way a PyTorch user would (nn.Linear, matmul attention with a causal mask; torch 1.13 has no fused SDPA).
Prints one JSON line: step_s (median), tokens_per_s."""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--batch", type=int, default=4)
p.add_argument("--seq-len", type=int, default=256)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--steps", type=int, default=3)
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)

D, L, H, KV, FF, V, THETA, EPS = 576, 30, 9, 3, 1536, 49152, 100000.0, 1e-5
HD = D // H


class RMSNorm(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.w = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * self.w


def rotate_half(x):
    x1, x2 = x[..., : HD // 2], x[..., HD // 2:]
    return torch.cat((-x2, x1), dim=-1)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.n1, self.n2 = RMSNorm(D), RMSNorm(D)
        self.q = nn.Linear(D, H * HD, bias=False)
        self.k = nn.Linear(D, KV * HD, bias=False)
        self.v = nn.Linear(D, KV * HD, bias=False)
        self.o = nn.Linear(H * HD, D, bias=False)
        self.g = nn.Linear(D, FF, bias=False)
        self.u = nn.Linear(D, FF, bias=False)
        self.d = nn.Linear(FF, D, bias=False)

    def forward(self, x, cos, sin, causal):
        B, T, _ = x.shape
        h = self.n1(x)
        q = self.q(h).view(B, T, H, HD).transpose(1, 2)
        k = self.k(h).view(B, T, KV, HD).transpose(1, 2)
        v = self.v(h).view(B, T, KV, HD).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(H // KV, dim=1)
        v = v.repeat_interleave(H // KV, dim=1)
        s = (q @ k.transpose(-1, -2)) / HD ** 0.5
        s = s.masked_fill(causal, float("-inf"))
        o = (F.softmax(s, dim=-1) @ v).transpose(1, 2).reshape(B, T, D)
        x = x + self.o(o)
        h = self.n2(x)
        return x + self.d(F.silu(self.g(h)) * self.u(h))


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(V, D)
        self.blocks = nn.ModuleList(Block() for _ in range(L))
        self.norm = RMSNorm(D)

    def forward(self, tok):
        T = tok.shape[1]
        inv = 1.0 / THETA ** (torch.arange(0, HD, 2).float() / HD)
        ang = torch.outer(torch.arange(T).float(), inv)
        ang = torch.cat((ang, ang), -1)
        cos, sin = ang.cos(), ang.sin()
        causal = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
        x = self.emb(tok)
        for b in self.blocks:
            x = b(x, cos, sin, causal)
        return self.norm(x) @ self.emb.weight.t()  # tied head


m = Model()
for prm in m.parameters():
    if prm.dim() == 2:
        nn.init.normal_(prm, std=0.02)
opt = torch.optim.AdamW(m.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
tok = torch.randint(0, V, (a.batch, a.seq_len))
tgt = torch.randint(0, V, (a.batch, a.seq_len))
times = []
for s in range(a.steps + 1):  # step 0 is warm-up
    t0 = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    logits = m(tok)
    loss = F.cross_entropy(logits.view(-1, V), tgt.view(-1))
    loss.backward()
    torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
    opt.step()
    if s:
        times.append(time.perf_counter() - t0)
t = statistics.median(times)
print(json.dumps({"step_s": t, "tokens_per_s": a.batch * a.seq_len / t, "torch": torch.__version__,
                  "threads": a.threads}))
