"""The arithmetic task family: prompts, worked solutions, the exact verifier, the train/test
split by problem, and noisy demonstrations."""

from __future__ import annotations

import random
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from expc.runtime.rlvr.tasks import (
    ArithmeticTask,
    Problem,
    extract_answer,
    running_totals,
    verify,
    worked_solution,
)

PROBLEM = Problem((57, 8, 33), ("+", "-"), 2)


def evaluate(prompt: str) -> int:
    """An independent evaluation of a prompt such as '57+08-33='."""
    terms = re.findall(r"[+-]?\d+", prompt.rstrip("="))
    return sum(int(t) for t in terms)


def test_prompt_and_worked_solution_format() -> None:
    assert PROBLEM.prompt == "57+08-33="
    assert PROBLEM.answer == 32
    assert worked_solution(PROBLEM) == "57+08=65,65-33=32#32\n"
    negative = Problem((5, 9, 3), ("-", "-"), 1)
    assert worked_solution(negative) == "5-9=-4,-4-3=-7#-7\n"


@pytest.mark.parametrize(
    "completion,correct",
    [
        ("57+08=65,65-33=32#32\n", True),
        ("#32\n", True),  # only the final answer is checked (an outcome reward)
        ("57+08=65,65-33=31#32\n", True),
        ("57+08=65,65-33=31#31\n", False),
        ("#032\n", False),  # not canonical
        ("#32 \n", False),
        ("32\n", False),  # no marker
        ("#31#32\n", True),  # the last marker counts
        ("#32\n#31\n", True),  # text after the stop token is ignored
        ("#32", True),  # ran out of tokens right after the answer
        ("#3", False),
        ("", False),
    ],
)
def test_verifier_is_exact(completion: str, correct: bool) -> None:
    assert verify(PROBLEM, completion) is correct


def test_extract_answer() -> None:
    assert extract_answer("1+2=3#3\nrest") == "3"
    assert extract_answer("no marker\n#4") is None


@given(
    operands=st.integers(2, 5),
    digits=st.integers(1, 3),
    seed=st.integers(0, 10**6),
)
def test_clean_solutions_verify_and_match_an_independent_evaluation(
    operands: int, digits: int, seed: int
) -> None:
    task = ArithmeticTask(operands=operands, digits=digits)
    problem = task.random_problem(random.Random(seed))
    assert len(problem.prompt) == task.prompt_length
    assert problem.answer == evaluate(problem.prompt)
    solution = worked_solution(problem)
    assert verify(problem, solution)
    assert len(solution) <= task.max_completion_length
    assert solution.isascii()


def test_train_and_test_problems_never_overlap() -> None:
    task = ArithmeticTask(operands=3, digits=1, test_fraction=0.2)  # 4000 problems in all
    test = task.test_problems(200, seed=0)
    assert len({p.prompt for p in test}) == 200
    assert all(task.is_test(p) for p in test)
    assert [p.prompt for p in task.test_problems(200, seed=0)] == [p.prompt for p in test]
    rng = random.Random(1)
    train = {task.train_problem(rng).prompt for _ in range(5000)}
    assert not train & {p.prompt for p in test}
    assert not any(task.is_test(task.train_problem(rng)) for _ in range(1000))
    # The partition holds about test_fraction of the space.
    rng = random.Random(2)
    share = sum(task.is_test(task.random_problem(rng)) for _ in range(4000)) / 4000
    assert share == pytest.approx(0.2, abs=0.03)


def test_too_many_test_problems_is_refused() -> None:
    with pytest.raises(ValueError, match="too many"):
        ArithmeticTask(operands=2, digits=1, subtract=False).test_problems(50)


def test_noisy_demonstrations_slip_at_the_given_rate_and_stay_consistent() -> None:
    task = ArithmeticTask(operands=3, digits=2, noise=0.3)
    rng = random.Random(0)
    draws = [(p := task.train_problem(rng), task.demonstration(p, rng)) for _ in range(4000)]
    solved = sum(verify(p, d) for p, d in draws) / len(draws)
    # Two steps, each wrong with chance 0.3; slips of +-1 / +-10 can only cancel across steps
    # in rare cases, so about 0.7 ** 2 of the demonstrations are right.
    assert solved == pytest.approx(0.49, abs=0.03)
    for _, demonstration in draws[:200]:
        steps = demonstration.split("#")[0].split(",")
        results = [int(s.split("=")[1]) for s in steps]
        for step, result in zip(steps, results, strict=True):
            left = step.split("=")[0]
            assert abs(evaluate(left) - result) in (0, 1, 10)  # at most one slip per step
        assert demonstration.endswith(f"#{results[-1]}\n")  # the answer follows the chain
    clean = ArithmeticTask(noise=0.0)
    assert all(verify(p, clean.demonstration(p, rng)) for p, _ in draws[:500])


def test_slips_carry_through_the_chain() -> None:
    assert running_totals(PROBLEM, (10, 0)) == [75, 42]
    assert worked_solution(PROBLEM, (10, -1)) == "57+08=75,75-33=41#41\n"
