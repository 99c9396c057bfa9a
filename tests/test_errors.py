"""Bad specs and their exact messages: location, caret, what was expected, did-you-mean.
Golden files live in tests/golden/errors (`EXPC_UPDATE_GOLDEN=1` rewrites them)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import ROOT, error_text, run_cli

GOLDEN = ROOT / "tests" / "golden" / "errors"
CASES = sorted(GOLDEN.glob("*.exp"))
UPDATE = os.environ.get("EXPC_UPDATE_GOLDEN") == "1"


@pytest.mark.parametrize("spec", CASES, ids=[c.stem for c in CASES])
def test_error_message(spec: Path) -> None:
    name = spec.relative_to(ROOT).as_posix()
    produced = error_text(spec.read_text(), name=name)
    expected = spec.with_suffix(".stderr")
    if UPDATE:
        expected.write_text(produced)
    assert produced == expected.read_text()
    assert "Traceback" not in produced
    assert f"--> {name}:" in produced or "missing" in produced


def test_corpus_is_large() -> None:
    assert len(CASES) >= 40


def test_cli_prints_errors_without_traceback_and_exits_nonzero(tmp_path: Path) -> None:
    bad = GOLDEN / "several_errors_at_once.exp"
    result = run_cli("compile", bad.relative_to(ROOT), "-o", tmp_path)
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.output.count("error:") == 3
    assert "3 errors found" in result.output


def test_every_spec_with_errors_is_reported_in_one_run(tmp_path: Path) -> None:
    first, second = GOLDEN / "unknown_field.exp", GOLDEN / "out_of_range.exp"
    result = run_cli("compile", first.relative_to(ROOT), second.relative_to(ROOT), "-o", tmp_path)
    assert result.exit_code == 1
    assert "unknown_field.exp:" in result.output and "out_of_range.exp:" in result.output
