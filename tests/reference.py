"""An independent, einsum-based implementation of gated attention to test generated code."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def reference_attention(
    attn,
    x: torch.Tensor,
    rope: tuple[torch.Tensor, torch.Tensor] | None,
    gate: str = "none",
    position: str = "sdpa",
    activation: str = "sigmoid",
    causal: bool = True,
) -> torch.Tensor:
    """The paper's gate written out: Y' = Y * act(X W), applied to the values (G2) or to
    each head's attention output (G1), then the output projection W_O. rope None: no
    rotary embeddings (a DiT, a U-Net); causal False: every query sees every key; the
    projections' biases are added where the module has them."""
    batch, length, width = x.shape
    heads, head_dim = attn.heads, width // attn.heads
    qkv = x @ attn.qkv.weight.T
    if attn.qkv.bias is not None:
        qkv = qkv + attn.qkv.bias
    q, k, v = qkv.split(width, dim=-1)
    q, k, v = (t.view(batch, length, heads, head_dim) for t in (q, k, v))
    scores = None
    if gate != "none":
        logits = (x @ attn.gate.weight.T).view(batch, length, heads, -1)
        scores = torch.sigmoid(logits) if activation == "sigmoid" else F.silu(logits)
        assert logits.shape[-1] == (head_dim if gate == "elementwise" else 1)
    if scores is not None and position == "value":
        v = v * scores
    if rope is not None:
        cos, sin = rope

        def rotate(t: torch.Tensor) -> torch.Tensor:
            half = head_dim // 2
            t1, t2 = t[..., :half], t[..., half:]
            return torch.cat((t1 * cos - t2 * sin, t1 * sin + t2 * cos), dim=-1)

        q, k = rotate(q), rotate(k)
    logits_qk = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(head_dim)
    if causal:
        mask = torch.ones(length, length, dtype=torch.bool).tril()
        logits_qk = logits_qk.masked_fill(~mask, float("-inf"))
    probs = logits_qk.softmax(-1)
    y = torch.einsum("bhqk,bkhd->bqhd", probs, v)
    if scores is not None and position == "sdpa":
        y = y * scores
    out = y.reshape(batch, length, width) @ attn.proj.weight.T
    return out + attn.proj.bias if attn.proj.bias is not None else out
