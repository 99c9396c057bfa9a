"""Inputs at the edges: every one gives a clear error or works, quickly, never a
RecursionError, a hang or a MemoryError."""

from __future__ import annotations

import time

import pytest
from conftest import MINIMAL, error_text

from expc.compiler.pipeline import resolve
from expc.compiler.source import SourceFile


def timed_error(text: str) -> str:
    started = time.perf_counter()
    message = error_text(text)
    assert time.perf_counter() - started < 10, "took too long"
    assert "Traceback" not in message and "RecursionError" not in message
    return message


def large_spec(variants: int) -> str:
    """A realistic large spec: the base plus one three-line variant per width."""
    blocks = [f"variant w{i} {{\n  model.layers = {1 + i % 4}\n}}\n" for i in range(variants)]
    return MINIMAL + "".join(blocks)


def test_a_thousand_line_spec_compiles() -> None:
    text = large_spec(331)
    assert text.count("\n") >= 1000
    spec, _ = resolve(SourceFile("big.exp", text))
    assert len(spec.runs) == 331


def test_huge_file_is_refused() -> None:
    text = MINIMAL + "# " + "x" * 300_000 + "\n"
    assert "the limit is 256,000" in timed_error(text)


@pytest.mark.parametrize("opener,closer", [("a { ", "}"), ("x = [", "]")])
def test_deep_nesting_is_refused(opener: str, closer: str) -> None:
    text = MINIMAL + opener * 5000 + closer * 5000 + "\n"
    assert "nest deeper than 64 levels" in timed_error(text)


def test_huge_sweep_is_refused_before_expanding() -> None:
    values = ", ".join(str(i) for i in range(1, 15_001))
    text = MINIMAL + f"sweep s {{ model.layers = [{values}] train.steps = [{values}] }}\n"
    assert "expands to 225000000 runs; the limit is 4096" in timed_error(text)


@pytest.mark.parametrize("number", ["1" * 400, "1e400", "-1e400", "9" * 50 + ".5e300"])
def test_huge_numbers(number: str) -> None:
    assert "number is too large" in timed_error(MINIMAL + f"train.steps = {number}\n")


def test_number_beyond_a_field_range() -> None:
    message = timed_error(MINIMAL + "experiment.seed = 100000000000000000000\n")
    assert "`experiment.seed` must be <= 9223372036854775807" in message


def test_long_names_and_strings() -> None:
    message = timed_error(MINIMAL + "train." + "q" * 50_000 + " = 1\n")
    assert "unknown field" in message
    spec, _ = resolve(
        SourceFile("s.exp", MINIMAL.replace("{}", '{ description = "' + "d" * 200_000 + '" }', 1))
    )
    assert len(spec.config.experiment.description) == 200_000


def test_many_syntax_errors_are_capped() -> None:
    text = MINIMAL + "oops = = 1\n" * 5000
    message = timed_error(text)
    assert message.count("error:") == 20


def test_empty_and_whitespace_specs() -> None:
    for text in ["", "\n\n  \n", "# only a comment\n"]:
        assert "missing blocks `experiment`, `data`, `model`, `objective`" in timed_error(text)
