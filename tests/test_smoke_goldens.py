"""Each committed spec's smoke run reproduces its recorded metrics exactly (timing aside)."""

from __future__ import annotations

from pathlib import Path

import pytest
import smoke_goldens

# The Triton-kernel spec runs its kernel under the interpreter: ~40 s, so it is slow.
SLOW = {"gated_attention_cuda"}


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("smoke_goldens")


@pytest.mark.parametrize(
    "spec",
    [pytest.param(s, marks=pytest.mark.slow) if s in SLOW else s for s in smoke_goldens.SPECS],
)
def test_smoke_metrics_match_the_golden_files(spec: str, scratch: Path) -> None:
    if spec == "hivemind" and not (scratch / "runs" / "gated_attention").exists():
        smoke_goldens.run_smoke("gated_attention", scratch)  # its generators' checkpoints
    expected = smoke_goldens.golden(spec)
    assert expected, f"no golden files for {spec}: run `python tests/smoke_goldens.py`"
    found = smoke_goldens.run_smoke(spec, scratch)
    assert sorted(found) == sorted(expected)
    for run, rows in expected.items():
        assert found[run] == rows, f"{spec}/{run} moved"
