"""Pretraining batches and their loss mask, the reward, and counting correct samples through
the real sampler with scripted models."""

from __future__ import annotations

import random

import pytest
import torch

from expc.runtime.rlvr.stages import (
    count_correct,
    demonstration_batch,
    masked_next_token_loss,
    reward,
)
from expc.runtime.rlvr.tasks import STOP_TOKEN, ArithmeticTask, Problem, decode, encode


def test_demonstration_batch_masks_exactly_the_completion() -> None:
    task = ArithmeticTask(operands=3, digits=2, noise=0.0)
    tokens, mask = demonstration_batch(task, random.Random(0), 16)
    assert tokens.shape[0] == 16 and mask.shape == (16, tokens.shape[1] - 1)
    for row, row_mask in zip(tokens.tolist(), mask, strict=True):
        text = decode(row)
        prompt, completion = text[: task.prompt_length], text[task.prompt_length :]
        assert prompt.endswith("=")
        targets = [t for t, m in zip(row[1:], row_mask.tolist(), strict=True) if m]
        # The targets are the completion up to and including its stop token, nothing else.
        assert decode(targets) == completion.split("\n")[0] + "\n"
        problem_reward = reward(_parse(prompt), targets)
        assert problem_reward == 1.0  # noise 0: every demonstration is right


def _parse(prompt: str) -> Problem:
    import re

    terms = re.findall(r"([+-]?)(\d+)", prompt.rstrip("="))
    operands = tuple(int(d) for _, d in terms)
    return Problem(operands, tuple(s for s, _ in terms[1:]), len(terms[0][1]))


class Uniform(torch.nn.Module):
    """A model with constant logits: the loss is log(vocab) at every position."""

    def forward(self, tokens: torch.Tensor, cache: object | None = None):
        return torch.zeros(*tokens.shape, 256), None


def test_masked_loss_averages_over_masked_positions() -> None:
    tokens = torch.randint(0, 256, (2, 5))
    mask = torch.tensor([[0.0, 1, 1, 0], [0, 0, 0, 1]])
    loss = masked_next_token_loss(Uniform(), tokens, mask)
    assert loss.item() == pytest.approx(torch.log(torch.tensor(256.0)).item())


class Scripted:
    """A fake policy without a KV cache that writes `answer(prompt)` after each prompt."""

    def __init__(self, answer) -> None:  # answer: prompt text -> completion text
        self.answer = answer

    def __call__(self, tokens: torch.Tensor):
        rows = []  # the next token of each row, put at its last position
        for row in tokens.tolist():
            text = decode(row)
            prompt = text[: text.index("=") + 1]
            target = encode(prompt + self.answer(prompt))
            position = len(row)
            rows.append(target[position] if position < len(target) else STOP_TOKEN)
        logits = torch.full((tokens.size(0), tokens.size(1), 256), -50.0)
        logits[torch.arange(tokens.size(0)), -1, torch.tensor(rows)] = 50.0
        return logits, None


def test_count_correct_samples_through_the_sampler() -> None:
    task = ArithmeticTask(operands=3, digits=1)
    problems = task.test_problems(5)
    right = Scripted(lambda prompt: f"#{_parse(prompt).answer}\n")
    half = Scripted(lambda prompt: f"#{_parse(prompt).answer + (prompt < '5')}\n")
    expected_half = [0 if p.prompt < "5" else 6 for p in problems]
    assert 0 < sum(expected_half) < 30  # both kinds occur
    # 6 samples per problem: two problems per call, then one problem over two calls.
    for batch_size in (12, 4):
        for model, expected in ((right, [6] * 5), (half, expected_half)):
            counts = count_correct(model, problems, 6, 8, batch_size=batch_size, use_cache=False)
            assert counts == expected
    with pytest.raises(ValueError, match="prompt length"):
        count_correct(right, [problems[0], Problem((12, 3, 4), ("+", "+"), 2)], 2, 8)
