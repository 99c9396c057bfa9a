"""Verifiable reasoning tasks: a problem generator, demonstrations and an exact verifier.

The family here is multi-step integer arithmetic, written in bytes (the LM template's vocabulary
is the 256 byte values):

    prompt      "57+08-33="
    completion  "57+08=65,65-33=32#32\n"

The completion works one operation at a time (a chain of thought), then gives the answer after
the marker `#` and ends with a newline (the stop token). The verifier checks only the final
answer, like an RLVR outcome reward. Demonstrations can be noisy: each step's result is wrong
with probability `noise` (a digit or carry slip), and the chain carries the mistake through to
its answer, so a model pretrained on them solves a problem only some of the time.

Problems are split into train and test by a hash of the prompt, a fixed partition of the whole
problem space: training draws reject test problems, so no test problem is ever trained on.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

STOP = "\n"
ANSWER_MARKER = "#"
STOP_TOKEN = ord(STOP)
# The slips a noisy demonstration makes: a units digit or a tens digit (a dropped carry).
SLIPS = (-10, -1, 1, 10)


@dataclass(frozen=True)
class Problem:
    """`operands[0] ops[0] operands[1] ops[1] ...`, evaluated left to right."""

    operands: tuple[int, ...]
    ops: tuple[str, ...]
    digits: int

    def term(self, i: int) -> str:
        return f"{self.operands[i]:0{self.digits}d}"

    @property
    def prompt(self) -> str:
        parts = [self.term(0)] + [op + self.term(i + 1) for i, op in enumerate(self.ops)]
        return "".join(parts) + "="

    @property
    def answer(self) -> int:
        return running_totals(self)[-1]


def running_totals(problem: Problem, slips: tuple[int, ...] | None = None) -> list[int]:
    """The result after each operation; `slips[i]` is added to step i's result."""
    total, totals = problem.operands[0], []
    for i, op in enumerate(problem.ops):
        operand = problem.operands[i + 1]
        total = total + operand if op == "+" else total - operand
        if slips is not None:
            total += slips[i]
        totals.append(total)
    return totals


def worked_solution(problem: Problem, slips: tuple[int, ...] | None = None) -> str:
    """The step-by-step completion, with optional slips in the step results."""
    totals = running_totals(problem, slips)
    left = [problem.term(0)] + [str(t) for t in totals[:-1]]
    steps = [f"{left[i]}{op}{problem.term(i + 1)}={totals[i]}" for i, op in enumerate(problem.ops)]
    return ",".join(steps) + f"{ANSWER_MARKER}{totals[-1]}{STOP}"


def extract_answer(completion: str) -> str | None:
    """The text after the last answer marker, up to the stop (None without a marker)."""
    text = completion.split(STOP, 1)[0]
    if ANSWER_MARKER not in text:
        return None
    return text.rsplit(ANSWER_MARKER, 1)[1]


def verify(problem: Problem, completion: str) -> bool:
    """Exact: the completion's final answer is the true answer, written canonically."""
    return extract_answer(completion) == str(problem.answer)


@dataclass(frozen=True)
class ArithmeticTask:
    """Difficulty: `operands` numbers of `digits` digits each, joined by + (and - when
    `subtract`). `test_fraction` of the problem space is held out for testing; `noise` is the
    chance that a demonstration step is wrong."""

    operands: int = 3
    digits: int = 2
    subtract: bool = True
    test_fraction: float = 0.1
    noise: float = 0.0

    def __post_init__(self) -> None:
        if self.operands < 2 or self.digits < 1:
            raise ValueError("a problem needs at least 2 operands of at least 1 digit")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        if not 0.0 <= self.noise < 1.0:
            raise ValueError(f"noise must be in [0, 1), got {self.noise}")

    @property
    def space_size(self) -> int:
        """How many distinct problems the family has."""
        return 10 ** (self.digits * self.operands) * (2 if self.subtract else 1) ** (
            self.operands - 1
        )

    @property
    def prompt_length(self) -> int:
        """Every prompt has the same length (zero-padded operands), so prompts batch."""
        return self.operands * (self.digits + 1)

    @property
    def max_completion_length(self) -> int:
        """A bound on the length of a worked solution (results can be negative and one digit
        longer than the operands), for sampling budgets."""
        result = self.digits + 2 + len(str(self.operands))  # sign, carries
        step = 2 * result + 2  # "left op right=result"
        return (self.operands - 1) * (step + 1) + 1 + result + 1

    def random_problem(self, rng: random.Random) -> Problem:
        operands = tuple(rng.randrange(10**self.digits) for _ in range(self.operands))
        ops = tuple(rng.choice("+-" if self.subtract else "+") for _ in range(self.operands - 1))
        return Problem(operands, ops, self.digits)

    def is_test(self, problem: Problem) -> bool:
        """The fixed train/test partition: a hash of the prompt, independent of any seed."""
        digest = hashlib.sha256(problem.prompt.encode()).digest()
        return int.from_bytes(digest[:8], "big") < self.test_fraction * 2**64

    def train_problem(self, rng: random.Random) -> Problem:
        while True:
            problem = self.random_problem(rng)
            if not self.is_test(problem):
                return problem

    def test_problems(self, count: int, seed: int = 0) -> list[Problem]:
        """`count` distinct held-out problems."""
        if count > self.test_fraction * self.space_size / 2:
            raise ValueError(f"{count} test problems is too many for this task's space")
        rng, found = random.Random(seed), {}
        while len(found) < count:
            problem = self.random_problem(rng)
            if self.is_test(problem):
                found.setdefault(problem.prompt, problem)
        return list(found.values())

    def demonstration(self, problem: Problem, rng: random.Random) -> str:
        """A worked solution in which each step slips with probability `noise`."""
        slips = tuple(rng.choice(SLIPS) if rng.random() < self.noise else 0 for _ in problem.ops)
        return worked_solution(problem, slips)


def encode(text: str) -> list[int]:
    return list(text.encode("ascii"))


def decode(tokens: list[int]) -> str:
    return bytes(tokens).decode("ascii", errors="replace")
