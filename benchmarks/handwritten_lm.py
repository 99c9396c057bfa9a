"""A plain, hand-written PyTorch version of the gated_attention model (no expc involved):
pre-norm RMSNorm blocks, rotary embeddings, GELU MLP, tied embeddings, and an optional
elementwise G1 gate. It is the baseline the generated code must not be slower than."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    def __init__(self, width: int, heads: int, gated: bool) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.out = nn.Linear(width, width, bias=False)
        self.gate = nn.Linear(width, width, bias=False) if gated else None

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, c // self.heads).unbind(2)

        def rotate(u: torch.Tensor) -> torch.Tensor:
            u1, u2 = u.chunk(2, dim=-1)
            return torch.cat((u1 * cos - u2 * sin, u1 * sin + u2 * cos), dim=-1)

        q, k = rotate(q).transpose(1, 2), rotate(k).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v.transpose(1, 2), is_causal=True).transpose(1, 2)
        if self.gate is not None:
            y = y * torch.sigmoid(self.gate(x)).view(b, t, self.heads, -1)
        return self.out(y.reshape(b, t, c))


class Block(nn.Module):
    def __init__(self, width: int, heads: int, gated: bool) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.RMSNorm(width), nn.RMSNorm(width)
        self.attn = Attention(width, heads, gated)
        self.mlp = nn.Sequential(
            nn.Linear(width, 4 * width, bias=False),
            nn.GELU(),
            nn.Linear(4 * width, width, bias=False),
        )

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), cos, sin)
        return x + self.mlp(self.norm2(x))


class HandwrittenLM(nn.Module):
    def __init__(self, layers: int, width: int, heads: int, gated: bool, base: float = 1e4) -> None:
        super().__init__()
        self.embed = nn.Embedding(256, width)
        self.blocks = nn.ModuleList(Block(width, heads, gated) for _ in range(layers))
        self.norm = nn.RMSNorm(width)
        self.head = nn.Linear(width, 256, bias=False)
        self.head.weight = self.embed.weight
        head_dim = width // heads
        self.register_buffer(
            "inv_freq", base ** (-torch.arange(0, head_dim, 2).float() / head_dim), persistent=False
        )
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)

    def forward(self, tokens: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        angles = torch.outer(torch.arange(tokens.size(1), dtype=torch.float32), self.inv_freq)
        cos, sin = angles.cos()[:, None, :], angles.sin()[:, None, :]
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x, cos, sin)
        logits = self.head(self.norm(x))
        return F.cross_entropy(logits.view(-1, 256), targets.reshape(-1))
