"""PyTorch eager reference for `cargo bench --bench train_step`.

The same steps as the Rust bench, at the same shapes, with the same
thread count, so the bench can print mer/PyTorch side by side. Benchmark
only: torch is never installed in CI (see benches/reference/README.md).

Prints one JSON object per line: {"name", "ms", "samples_per_s"}.
"""

import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def sync():
    # GPU work is asynchronous: a step is done when the device says so.
    if torch.cuda.is_available() and torch.get_default_device().type == "cuda":
        torch.cuda.synchronize()


def timed(reps, f):
    f()  # warm-up
    sync()
    t0 = time.perf_counter()
    for _ in range(reps):
        f()
    sync()
    return (time.perf_counter() - t0) / reps


def emit(name, seconds, batch):
    print(json.dumps({"name": name, "ms": seconds * 1e3, "samples_per_s": batch / seconds}), flush=True)


def asymmetric(logits, y, gamma_neg=4.0, clip=0.05):
    p = torch.sigmoid(logits)
    pm = (p - clip).clamp(min=0)
    pos = y * torch.log(p.clamp(min=1e-8))
    neg = (1 - y) * pm.pow(gamma_neg) * torch.log((1 - pm).clamp(min=1e-8))
    return -(pos + neg).sum() / logits.shape[0]


def demo_3dcnn():
    # recipes/demo/synth_me_3dcnn.mer
    model = nn.Sequential(
        nn.Conv3d(1, 8, (1, 5, 5)), nn.ReLU(), nn.MaxPool3d((1, 3, 3)),
        nn.Conv3d(8, 16, (2, 3, 3)), nn.ReLU(), nn.MaxPool3d((1, 2, 2)),
        nn.Flatten(), nn.Dropout(0.3), nn.Linear(16 * 5 * 3 * 3, 4),
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-3)
    b = 16
    x = torch.randn(b, 1, 6, 32, 32)
    y = (torch.randn(b, 4) >= 0).float()

    def step():
        opt.zero_grad()
        asymmetric(model(x), y).backward()
        opt.step()

    emit("demo_3dcnn", timed(10, step), b)


class Led(nn.Module):
    """AU-LLM's LED filter: x·W / (|x|·|W| + 1e-8) over time, frame 0 dropped."""

    def __init__(self, alpha=10.0, r1=0.4, r2=0.05):
        super().__init__()
        self.log_alpha = nn.Parameter(torch.tensor(math.log(alpha)))
        self.log_r1 = nn.Parameter(torch.tensor(math.log(r1)))
        self.log_r2 = nn.Parameter(torch.tensor(math.log(r2)))

    @staticmethod
    def a(log_r, t):
        i = torch.arange(t).view(t, 1)
        j = torch.arange(t).view(1, t)
        upper = (j > i).float()
        e1 = (j - i).clamp(min=0).float() * upper
        e2 = i.clamp(max=1).float() * upper
        r = log_r.exp()
        up = torch.exp(e1 * torch.log1p(-r) + e2 * log_r) * upper
        return up + torch.eye(t) * r

    def forward(self, x):
        t = x.shape[2]
        w = (self.a(self.log_r1, t) - self.a(self.log_r2, t)) * self.log_alpha.exp()
        xt = x.permute(0, 1, 3, 4, 2)
        y = (xt @ w) / (xt.abs() @ w.abs() + 1e-8)
        return y.permute(0, 1, 4, 2, 3)[:, :, 1:]


class Se(nn.Module):
    def __init__(self, c, reduction=16):
        super().__init__()
        h = max(c // reduction, 1)
        self.fc1, self.fc2 = nn.Linear(c, h), nn.Linear(h, c)

    def forward(self, x):
        s = x.mean(dim=(-1, -2)).transpose(1, 2)
        g = torch.sigmoid(self.fc2(F.relu(self.fc1(s))))
        return x * g.transpose(1, 2)[..., None, None]


def au_llm_backbone():
    # recipes/au_llm/backbone.mer at the paper's input (6 gray 64×64 frames)
    # with an 8-AU linear head: LED → conv → SE → F_mid → F_high.
    model = nn.Sequential(
        Led(), nn.Conv3d(1, 32, (1, 5, 5)), nn.ReLU(), nn.MaxPool3d((1, 3, 3)),
        nn.BatchNorm3d(32), nn.Dropout(0.3), nn.Conv3d(32, 64, (2, 3, 3)), nn.ReLU(),
        nn.BatchNorm3d(64), Se(64), nn.MaxPool3d((2, 2, 2)), nn.Dropout(0.3),
        nn.Flatten(), nn.Linear(64 * 2 * 9 * 9, 256), nn.Linear(256, 8),
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=1e-3)
    b = 16
    x = torch.randn(b, 1, 6, 64, 64)
    y = (torch.randn(b, 8) >= 0).float()

    def step():
        opt.zero_grad()
        asymmetric(model(x), y).backward()
        opt.step()

    emit("au_llm_backbone", timed(5, step), b)


def vit_block():
    b, n, d = 8, 197, 192
    block = nn.TransformerEncoderLayer(d, 3, 4 * d, dropout=0.0, activation="gelu",
                                       batch_first=True, norm_first=True)
    x = torch.randn(b, n, d)

    def step():
        block.zero_grad()
        block(x).sum().backward()

    emit("vit_block", timed(5, step), b)


class Lora(nn.Module):
    def __init__(self, base, rank, alpha):
        super().__init__()
        self.base = base
        self.a = nn.Parameter(torch.randn(rank, base.in_features) * 0.01)
        self.b = nn.Parameter(torch.zeros(base.out_features, rank))
        self.scale = alpha / rank

    def forward(self, x):
        return self.base(x) + (x @ self.a.t() @ self.b.t()) * self.scale


class Block(nn.Module):
    """One LLaMA decoder layer: RMSNorm, RoPE, GQA attention, SiLU MLP."""

    def __init__(self, d, heads, kv, inter, rank, alpha):
        super().__init__()
        hd = d // heads
        self.heads, self.kv, self.hd = heads, kv, hd
        self.q = Lora(nn.Linear(d, heads * hd, bias=False), rank, alpha)
        self.k = nn.Linear(d, kv * hd, bias=False)
        self.v = Lora(nn.Linear(d, kv * hd, bias=False), rank, alpha)
        self.o = nn.Linear(heads * hd, d, bias=False)
        self.gate = nn.Linear(d, inter, bias=False)
        self.up = nn.Linear(d, inter, bias=False)
        self.down = nn.Linear(inter, d, bias=False)
        self.n1 = nn.Parameter(torch.ones(d))
        self.n2 = nn.Parameter(torch.ones(d))

    @staticmethod
    def rms(x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * w

    def rope(self, x, cos, sin):
        x1, x2 = x[..., : self.hd // 2], x[..., self.hd // 2:]
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)

    def forward(self, x, cos, sin):
        b, t, _ = x.shape
        h = self.rms(x, self.n1)
        q = self.q(h).view(b, t, self.heads, self.hd).transpose(1, 2)
        k = self.k(h).view(b, t, self.kv, self.hd).transpose(1, 2)
        v = self.v(h).view(b, t, self.kv, self.hd).transpose(1, 2)
        q, k = self.rope(q, cos, sin), self.rope(k, cos, sin)
        g = self.heads // self.kv
        k, v = k.repeat_interleave(g, 1), v.repeat_interleave(g, 1)
        mask = torch.full((t, t), float("-inf")).triu(1)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.hd) + mask, -1)
        x = x + self.o((att @ v).transpose(1, 2).reshape(b, t, -1))
        h = self.rms(x, self.n2)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


def llm_lora(layers, batch, tokens):
    # SmolLM2-135M's width (576, 9 heads, 3 KV heads, MLP 1536), `layers`
    # deep; LoRA r8 α16 on q/v; embeddings in, last hidden state out.
    d, heads, kv, inter = 576, 9, 3, 1536
    blocks = nn.ModuleList([Block(d, heads, kv, inter, 8, 16.0) for _ in range(layers)])
    for name, p in blocks.named_parameters():
        p.requires_grad = name.endswith((".a", ".b"))
    hd = d // heads
    inv = 1.0 / (100000.0 ** (torch.arange(0, hd, 2).float() / hd))
    ang = torch.arange(tokens).float()[:, None] * inv[None, :]
    cos, sin = ang.cos(), ang.sin()
    norm = torch.ones(d)
    x = torch.randn(batch, tokens, d, requires_grad=True)
    lora = [p for p in blocks.parameters() if p.requires_grad]
    opt = torch.optim.Adam(lora, lr=1e-3)

    def step():
        opt.zero_grad()
        h = x
        for blk in blocks:
            h = blk(h, cos, sin)
        last = Block.rms(h, norm)[:, -1]
        last.pow(2).mean().backward()
        opt.step()

    emit("llm_lora", timed(5, step), batch)


def matmul_peak():
    n = 1024
    a, b = torch.randn(n, n), torch.randn(n, n)
    t = timed(5, lambda: a @ b)
    print(json.dumps({"name": "matmul", "ms": t * 1e3, "gflops": 2 * n**3 / t / 1e9}), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--llm-layers", type=int, default=4)
    ap.add_argument("--llm-batch", type=int, default=8)
    ap.add_argument("--llm-tokens", type=int, default=16)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (the GPU check: scripts/gpu-check.sh)")
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    # Every module and tensor below is created on this device.
    torch.set_default_device(a.device)
    torch.manual_seed(0)
    print(json.dumps({"name": "torch", "version": torch.__version__, "threads": torch.get_num_threads(),
                      "device": a.device}), flush=True)
    matmul_peak()
    demo_3dcnn()
    au_llm_backbone()
    vit_block()
    llm_lora(a.llm_layers, a.llm_batch, a.llm_tokens)


if __name__ == "__main__":
    main()
