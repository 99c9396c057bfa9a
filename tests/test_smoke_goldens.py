"""Each committed spec's smoke run reproduces its recorded metrics exactly (timing aside)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import smoke_goldens

# The Triton-kernel spec runs its kernel under the interpreter: ~40 s, so it is slow; so is
# loading and sampling SmolLM2 (~1 min).
SLOW = {"gated_attention_cuda", "hivemind_pretrained"}


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("smoke_goldens")


@pytest.mark.parametrize(
    "spec",
    [pytest.param(s, marks=pytest.mark.slow) if s in SLOW else s for s in smoke_goldens.SPECS],
)
def test_smoke_metrics_match_the_golden_files(
    spec: str, scratch: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    if spec.startswith("hivemind"):
        # A folder of its own: `expc run` trains the gated_attention smoke runs it samples.
        scratch = tmp_path_factory.mktemp("smoke_goldens_hivemind")
    expected = smoke_goldens.golden(spec)
    assert expected, f"no golden files for {spec}: run `python tests/smoke_goldens.py`"
    found = smoke_goldens.run_smoke(spec, scratch)
    assert sorted(found) == sorted(expected)
    for run, rows in expected.items():
        assert found[run] == rows, f"{spec}/{run} moved"
    if spec == "hivemind":  # its generators are the upstream runs it built
        upstream = smoke_goldens.smoke_folder("gated_attention", scratch)
        config = json.loads(
            (smoke_goldens.smoke_folder(spec, scratch) / "top_p" / "config.json").read_text()
        )
        assert config["model"]["checkpoints"] == [
            f"runs/{upstream.name}/vanilla",
            f"runs/{upstream.name}/gated",
        ]
        # ... trained as gated_attention's own smoke runs are.
        built = smoke_goldens.rows_of(upstream)
        assert sorted(built) == ["gated", "vanilla"]
        assert built == smoke_goldens.golden("gated_attention")
