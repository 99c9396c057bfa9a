"""The pieces of the two training stages and of the evaluation that are the same for every
policy: demonstration batches for pretraining, the masked next-token loss, the verifier as a
reward, and sampling n completions per held-out problem to count the correct ones."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from expc.runtime.rlvr.tasks import STOP_TOKEN, ArithmeticTask, Problem, decode, encode, verify
from expc.runtime.sampling import generate


def demonstration_batch(
    task: ArithmeticTask, rng: random.Random, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Training problems with (noisy) worked solutions, every prompt at position 0.

    Returns tokens (batch, L) right-padded with the stop token, and a (batch, L - 1) mask that
    is 1 where the next token is part of the completion (the stop token included): the model
    learns to answer, not to produce prompts.
    """
    rows, prompt_lengths = [], []
    for _ in range(batch_size):
        problem = task.train_problem(rng)
        prompt = encode(problem.prompt)
        rows.append(prompt + encode(task.demonstration(problem, rng)))
        prompt_lengths.append(len(prompt))
    length = max(len(row) for row in rows)
    tokens = torch.full((batch_size, length), STOP_TOKEN, dtype=torch.long)
    mask = torch.zeros(batch_size, length - 1)
    for i, (row, start) in enumerate(zip(rows, prompt_lengths, strict=True)):
        tokens[i, : len(row)] = torch.tensor(row)
        mask[i, start - 1 : len(row) - 1] = 1.0  # targets row[start:], the completion
    return tokens, mask


def solution_batch(
    task: ArithmeticTask, problems: Sequence[Problem], rng: random.Random
) -> torch.Tensor:
    """Each problem's prompt and a (noisy) worked solution, right-padded with the stop
    token: (len(problems), L) tokens for measuring a model on whole sequences."""
    rows = [encode(p.prompt) + encode(task.demonstration(p, rng)) for p in problems]
    tokens = torch.full((len(rows), max(map(len, rows))), STOP_TOKEN, dtype=torch.long)
    for i, row in enumerate(rows):
        tokens[i, : len(row)] = torch.tensor(row)
    return tokens


def demonstration_text(
    task: ArithmeticTask, count: int, seed: int, *, held_out: bool = False
) -> str:
    """`count` problems with (noisy) worked solutions, one a line, as one text: what a
    language model trains on when `objective next_token` reads `data arithmetic`. Training
    problems, or with `held_out` the held-out ones (for validation); never both."""
    rng = random.Random(seed)
    lines: list[str] = []
    while len(lines) < count:
        problem = task.random_problem(rng)
        if task.is_test(problem) == held_out:
            lines.append(problem.prompt + task.demonstration(problem, rng))
    return "".join(lines)


def demonstration_tokens(task: ArithmeticTask, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Worked solutions (with the task's slips) of `count` training problems as one byte
    stream, and of held-out problems, a tenth as many, for validation: never the same
    problem."""
    train = demonstration_text(task, count, seed=0)
    held_out = demonstration_text(task, max(1, count // 10), seed=1, held_out=True)
    return (
        torch.tensor(list(train.encode("ascii")), dtype=torch.long),
        torch.tensor(list(held_out.encode("ascii")), dtype=torch.long),
    )


def masked_next_token_loss(
    model: Any, tokens: torch.Tensor, mask: torch.Tensor, *, count: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean cross-entropy of the next token over the positions the mask selects.

    `count` replaces the number of selected positions as the divisor: under DDP each rank
    holds a shard of the batch and divides by the global count over the world size, so the
    ranks' averaged gradients are those of the whole batch's token mean."""
    logits, _ = model(tokens[:, :-1])
    losses = F.cross_entropy(
        logits.float().transpose(1, 2), tokens[:, 1:], reduction="none"
    )  # (batch, L - 1)
    return (losses * mask).sum() / (mask.sum().clamp(min=1.0) if count is None else count)


def reward(problem: Problem, completion: Sequence[int]) -> float:
    """The verifiable reward: 1 for a correct final answer, else 0."""
    return 1.0 if verify(problem, decode(list(completion))) else 0.0


def count_correct(
    model: Any,
    problems: Sequence[Problem],
    samples: int,
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_p: float = 1.0,
    batch_size: int = 512,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    use_cache: bool = True,
) -> list[int]:
    """For each problem, how many of `samples` sampled completions the verifier accepts.

    Problems must share one prompt length (an ArithmeticTask's do); each sampling call holds up
    to `batch_size` rows, all samples of whole problems when they fit.
    """
    if len({len(p.prompt) for p in problems}) > 1:
        raise ValueError("problems of different prompt lengths cannot share a batch")
    per_call = max(1, batch_size // samples)
    correct = []
    for start in range(0, len(problems), per_call):
        chunk = problems[start : start + per_call]
        prompts = torch.tensor([encode(p.prompt) for p in chunk], device=device)
        counts = [0] * len(chunk)
        for done in range(0, samples, batch_size):
            rows = min(samples - done, batch_size)
            out = generate(
                model,
                prompts.repeat_interleave(rows, dim=0),
                max_new_tokens,
                temperature=temperature,
                top_p=top_p,
                stop_token=STOP_TOKEN,
                generator=generator,
                use_cache=use_cache,
            ).cpu()
            for i, completion in enumerate(out.tolist()):
                counts[i // rows] += int(reward(chunk[i // rows], completion))
        correct.extend(counts)
    return correct
