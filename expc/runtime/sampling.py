"""Batched autoregressive sampling from a generated `Transformer`, with or without its KV cache.

The model contract is the one expc's LM template generates: `model(tokens, cache=cache)` returns
`(logits, loss)` with logits `(batch, length, vocab)`, and `model.new_cache(capacity)` returns an
empty KV cache. With the cache each step feeds only the newest token; without it each step
recomputes the whole prefix (the reference the cache is tested against).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def filter_probs(
    logits: torch.Tensor, *, temperature: float = 1.0, top_p: float = 1.0, min_p: float = 0.0
) -> torch.Tensor:
    """The sampling distribution over the last axis of `logits`, renormalised.

    Temperature scales the logits; then top-p keeps the smallest set of most likely tokens whose
    mass reaches `top_p` (the most likely token always stays), and min-p drops tokens whose
    probability is below `min_p` times the largest one. Both filters are read off the tempered
    distribution, so their order does not matter.
    """
    if temperature <= 0:
        raise ValueError("temperature must be > 0 here; temperature 0 means greedy decoding")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if not 0.0 <= min_p <= 1.0:
        raise ValueError(f"min_p must be in [0, 1], got {min_p}")
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    keep = torch.ones_like(probs, dtype=torch.bool)
    if top_p < 1.0:
        keep = _nucleus(probs, top_p)
    if min_p > 0.0:
        keep &= probs >= min_p * probs.amax(dim=-1, keepdim=True)
    probs = probs * keep
    return probs / probs.sum(dim=-1, keepdim=True)


# Above this vocabulary size the nucleus is looked for among the most likely tokens first:
# sorting a row of 262,144 probabilities (Gemma's vocabulary) costs 20x a top-1024.
LARGE_VOCAB = 4096
NUCLEUS_CANDIDATES = 1024


def _nucleus(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Which tokens top-p keeps: the most likely ones while the mass before them is < top_p
    (the first always stays). With a large vocabulary, when the `NUCLEUS_CANDIDATES` most
    likely tokens of every row already hold `top_p` of the mass, the nucleus lies among
    them and only they are sorted; otherwise the whole row is. Both give the same set."""
    if probs.size(-1) > LARGE_VOCAB:
        top, order = probs.topk(NUCLEUS_CANDIDATES, dim=-1)  # sorted, descending
        if bool((top.sum(dim=-1) >= top_p).all()):
            keep_top = (top.cumsum(dim=-1) - top) < top_p
            return torch.zeros_like(probs, dtype=torch.bool).scatter(-1, order, keep_top)
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
    keep_sorted = mass_before < top_p  # the first token has mass_before 0, so it stays
    return keep_sorted.scatter(-1, order, keep_sorted)


def next_tokens(
    logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_p: float = 1.0,
    min_p: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One token per row of `logits` (batch, vocab): argmax at temperature 0, else a draw."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = filter_probs(logits, temperature=temperature, top_p=top_p, min_p=min_p)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


class Cancelled(Exception):
    """Sampling stopped because its caller no longer wants the result."""


@torch.no_grad()
def generate(
    model: Any,
    prompt: torch.Tensor,
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_p: float = 1.0,
    min_p: float = 0.0,
    stop_token: int | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
    cancelled: Callable[[], bool] | None = None,
    vocab: int | None = None,
) -> torch.Tensor:
    """Sample `max_new_tokens` tokens after each row of `prompt` (batch, P), int64.

    Returns the new tokens only, (batch, max_new_tokens). Once a row emits `stop_token` the rest
    of that row is `stop_token`; when every row has stopped, sampling ends early. Runs under
    `no_grad` (not `inference_mode`: the tokens may later index an embedding in a training
    step). The caller chooses train/eval mode. `cancelled` is asked before each token (a
    server's client went away): when it says so, `Cancelled` is raised. `vocab`: only tokens
    below it are sampled (a model with a BOS token never emits it).
    """
    if prompt.dim() != 2 or prompt.size(1) == 0:
        raise ValueError(f"prompt must be (batch, P) with P >= 1, got {tuple(prompt.shape)}")
    batch = prompt.size(0)
    out = torch.full(
        (batch, max_new_tokens),
        stop_token if stop_token is not None else 0,
        dtype=torch.long,
        device=prompt.device,
    )
    if max_new_tokens == 0:
        return out
    cache = model.new_cache(prompt.size(1) + max_new_tokens) if use_cache else None

    def last(output: tuple[torch.Tensor, Any]) -> torch.Tensor:
        return output[0][:, -1] if vocab is None else output[0][:, -1, :vocab]

    logits = last(model(prompt, cache=cache) if cache is not None else model(prompt))
    stopped = torch.zeros(batch, dtype=torch.bool, device=prompt.device)
    for step in range(max_new_tokens):
        if cancelled is not None and cancelled():
            raise Cancelled(f"cancelled after {step} of {max_new_tokens} tokens")
        token = next_tokens(
            logits, temperature=temperature, top_p=top_p, min_p=min_p, generator=generator
        )
        if stop_token is not None:
            token = token.masked_fill(stopped, stop_token)
            stopped |= token == stop_token
        out[:, step] = token
        if step + 1 == max_new_tokens or (stop_token is not None and bool(stopped.all())):
            break  # the rest of `out` already holds stop_token
        if cache is not None:
            logits = last(model(token[:, None], cache=cache))
        else:
            logits = last(model(torch.cat((prompt, out[:, : step + 1]), dim=1)))
    return out
