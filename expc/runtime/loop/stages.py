"""What a run is made of: stages of steps, each with its evaluation cadence and its
learning-rate schedule (written once here, for every objective)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class WarmupCosine:
    """Linear warmup to `lr` over `warmup` steps, then cosine decay to `min_lr_ratio * lr`
    at step `steps` (steps counted from the stage's start)."""

    lr: float
    warmup: int
    steps: int
    min_lr_ratio: float

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        progress = (step - self.warmup) / max(1, self.steps - self.warmup)
        floor = self.lr * self.min_lr_ratio
        return floor + 0.5 * (self.lr - floor) * (1.0 + math.cos(math.pi * min(1.0, progress)))


@dataclass(frozen=True)
class Constant:
    """The same learning rate at every step of the stage."""

    lr: float

    def __call__(self, step: int) -> float:
        return self.lr


@dataclass(frozen=True)
class Stage:
    """`steps` gradient steps. A stage evaluates every `eval_every` steps and at its last
    one, or, without `eval_every`, exactly at the steps in `evaluations` (counted from the
    stage's start, 1-based). `lr` gives the learning rate of each step (0-based within the
    stage), which the loop writes into the objective's optimiser and its rows; None leaves
    the optimisers at their own rates. `blowup`: a row whose mean step loss is above
    `blowup` times the stage's first loss is marked `blown_up` (0: not watched, for losses
    that are not positive, such as GRPO's)."""

    steps: int
    eval_every: int = 0
    evaluations: frozenset[int] = frozenset()
    lr: Callable[[int], float] | None = None
    blowup: float = 0.0

    def evaluates(self, done: int) -> bool:
        """Whether the stage evaluates after its `done`-th step."""
        if not self.eval_every:
            return done in self.evaluations
        return done % self.eval_every == 0 or done == self.steps
