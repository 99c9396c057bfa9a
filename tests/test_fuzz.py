"""Fuzzing the compiler: no input may crash it. Every mutated spec either compiles to
Python that parses, or fails with expc diagnostics that carry a location.

The default suite runs a few hundred cases; `pytest -m slow tests/test_fuzz.py` runs the
long profile (10,000 cases per strategy).
"""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest
from conftest import MINIMAL, ROOT
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from ruff.__main__ import find_ruff_bin

from expc.compiler import CompileError
from expc.compiler.parse import _parser
from expc.compiler.pipeline import compile_source
from expc.compiler.source import SourceFile, Span

SEEDS = [MINIMAL] + [
    p.read_text()
    for p in sorted([*ROOT.glob("specs/**/*.exp"), *ROOT.glob("tests/golden/**/*.exp")])
]
FAST = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
LONG = settings(max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck))


def tokens(text: str) -> list[str]:
    """The spec's tokens with the whitespace between them, so they can be edited."""
    pieces, position = [], 0
    for token in _parser().lex(text, dont_ignore=True):
        start = token.start_pos or 0
        if start > position:
            pieces.append(text[position:start])
        pieces.append(str(token))
        position = token.end_pos or start
    pieces.append(text[position:])
    return pieces


@st.composite
def byte_mutants(draw) -> str:
    text = draw(st.sampled_from(SEEDS))
    data = bytearray(text.encode())
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "delete", "insert", "truncate"]))
        index = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[index] ^= 1 << draw(st.integers(0, 7))
        elif op == "delete" and data:
            del data[index : index + draw(st.integers(1, 8))]
        elif op == "insert":
            data[index:index] = draw(st.binary(min_size=1, max_size=4))
        else:
            data = data[:index]
    # What a spec file can hold: invalid UTF-8 is refused when the file is read.
    return data.decode("utf-8", errors="replace")


def _lexes(text: str) -> bool:
    try:
        tokens(text)
    except Exception:
        return False
    return True


LEXABLE = [seed for seed in SEEDS if _lexes(seed)]


@st.composite
def token_mutants(draw) -> str:
    pieces = tokens(draw(st.sampled_from(LEXABLE)))
    for _ in range(draw(st.integers(1, 3))):
        index = draw(st.integers(0, len(pieces) - 1))
        op = draw(st.sampled_from(["delete", "duplicate", "swap", "unicode"]))
        if op == "delete":
            del pieces[index]
        elif op == "duplicate":
            pieces.insert(index, pieces[index])
        elif op == "swap":
            other = draw(st.integers(0, len(pieces) - 1))
            pieces[index], pieces[other] = pieces[other], pieces[index]
        else:
            pieces.insert(index, draw(st.text(min_size=1, max_size=3)))
        if not pieces:
            break
    return "".join(pieces)


def check_no_internal_error(text: str) -> None:
    try:
        compiled = compile_source(SourceFile("fuzz.exp", text), format=False)
    except CompileError as error:
        assert error.diagnostics
        for diagnostic in error.diagnostics:
            assert isinstance(diagnostic.span, Span), diagnostic.message
            assert diagnostic.span.line >= 1 and diagnostic.span.column >= 1
        return
    for name, code in compiled.files.items():
        ast.parse(code, filename=name)


# A rule about a section left at its defaults (here `eval`) once raised an error with no
# line to point at; it now points at the spec's objective block.
DEFAULTED_SECTION = (
    "experiment demo {}\ndata arithmetic {\n  operands = 2\n  digits = 1\n}\n"
    "model transformer {\n  layers = 1\n  width = 16\n  heads = 2\n}\nobjective rlvr {}"
)


@FAST
@given(byte_mutants())
@example(DEFAULTED_SECTION)
def test_byte_mutants(text: str) -> None:
    check_no_internal_error(text)


@FAST
@given(token_mutants())
def test_token_mutants(text: str) -> None:
    check_no_internal_error(text)


@pytest.mark.slow
@LONG
@given(byte_mutants())
def test_byte_mutants_long(text: str) -> None:
    check_no_internal_error(text)


@pytest.mark.slow
@LONG
@given(token_mutants())
def test_token_mutants_long(text: str) -> None:
    check_no_internal_error(text)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(token_mutants(), min_size=8, max_size=8))
def test_mutants_that_compile_pass_ruff(tmp_path_factory, texts: list[str]) -> None:
    out = tmp_path_factory.mktemp("fuzz")
    for index, text in enumerate(texts):
        try:
            compiled = compile_source(SourceFile(f"fuzz{index}.exp", text))
        except CompileError:
            continue
        for name, code in compiled.files.items():
            path = Path(out, str(index), name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(code)
    lint = subprocess.run(
        [find_ruff_bin(), "check", "--config", str(ROOT / "pyproject.toml"), str(out)],
        capture_output=True,
        text=True,
    )
    assert lint.returncode == 0, lint.stdout
