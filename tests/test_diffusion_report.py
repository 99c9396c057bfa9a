"""The report's timescale analysis on metrics written by hand (known answers)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from diffusion_fixtures import one_thread  # noqa: F401

from expc.runtime.diffusion.report import analyse, collect
from expc.runtime.metrics import MetricsLogger

pytestmark = pytest.mark.usefixtures("one_thread")

STEPS = [100, 200, 400, 800, 1600, 3200, 6400]


def _write_run(root: Path, name: str, n: int, fmem: list[float], quality: list[float]) -> None:
    config = {
        "name": name,
        "data": {"n": n},
        "train": {"steps": 6400},
        "eval": {"memorization_threshold": 0.1, "generalization_tolerance": 0.1},
    }
    logger = MetricsLogger(root / name, config=config)
    for step, f, q in zip(STEPS, fmem, quality, strict=True):
        # A held-out loss that turns up after step 50 n (never, within 6400 steps, for n = 512).
        test = 1.0 + abs(math.log(step / (50 * n)))
        row = {"step": step, "memorization": f, "quality": q, "test_denoising_loss": test}
        logger.log({**row, "cpu_s": step / 100})
    logger.close(summary={})


def _experiment(tmp_path: Path) -> Path:
    # f_mem crosses 0.1 exactly at step 100 * n / 8 (log-midway between two evaluations for
    # n = 16 and 64); quality reaches its 90% level at step 200 for every n.
    quality = [100.0, 10.0, 5.0, 5.0, 5.0, 5.0, 5.0]  # level = 5 + 0.1 * 95 = 14.5
    runs = {
        "n_16": [0.0, 0.1, 0.5, 0.9, 1.0, 1.0, 1.0],
        "n_32": [0.0, 0.0, 0.1, 0.5, 0.9, 1.0, 1.0],
        "n_64": [0.0, 0.0, 0.0, 0.1, 0.5, 0.9, 1.0],
        "n_512": [0.0] * 7,  # never memorizes within the budget
    }
    for name, fmem in runs.items():
        _write_run(tmp_path, name, int(name[2:]), fmem, quality)
    (tmp_path / "spec.json").write_text(json.dumps({"runs": list(runs)}))
    return tmp_path


def test_collect_reads_the_timescales(tmp_path: Path) -> None:
    runs = collect(_experiment(tmp_path))
    assert [r.n for r in runs] == [16, 32, 64, 512]
    assert [r.tau_mem.steps for r in runs[:3]] == pytest.approx([200, 400, 800])
    assert runs[3].tau_mem.bound == "at_least" and runs[3].tau_mem.steps == 6400
    # 14.5 between 100 (step 100) and 10 (step 200): log-interpolated just below 200.
    expected = math.exp(math.log(100) + (100 - 14.5) / 90 * math.log(2))
    assert all(r.tau_gen.steps == pytest.approx(expected) for r in runs)


def test_analyse_writes_the_table_fit_and_plots(tmp_path: Path) -> None:
    experiment = _experiment(tmp_path)
    text = "\n".join(analyse(experiment))
    assert "| n_32 | 32 | 6400 |" in text and "| 400 | 12.5 |" in text
    assert "tau_mem against n: slope **1.00** over 3 values of n" in text
    assert "tau_gen against n: slope **0.00** over 4 values of n" in text
    assert "n = 512 (>= 6400)" in text  # the bound is named, not fitted
    assert "lowest test denoising loss against n: slope **1.00** over 3 values" in text
    assert "Budget: 4.3 CPU minutes" in text  # 4 runs x 64 s
    assert (experiment / "timescales.png").stat().st_size > 1000
    assert (experiment / "timescale_curves.png").stat().st_size > 1000
