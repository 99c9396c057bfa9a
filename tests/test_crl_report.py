"""The depth-scaling report: series, second-half means, the table and the plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from expc.runtime.crl.report import analyse, collect, second_half_mean


def write_run(experiment: Path, name: str, depth: int, success: list[float]) -> None:
    run = experiment / name
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"name": name, "model": {"depth": depth}}))
    rows = [
        {
            "step": 100 * (i + 1),
            "env_steps": 1000 * (i + 1),
            "success_rate": s,
            "time_at_goal": 10 * s,
        }
        for i, s in enumerate(success)
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_second_half_mean() -> None:
    rows = [{"step": s, "x": v} for s, v in ((100, 9.0), (200, 9.0), (300, 1.0), (400, 2.0))]
    assert second_half_mean(rows, "x") == pytest.approx(1.5)  # steps 300 and 400
    assert second_half_mean([], "x") is None
    assert second_half_mean([{"step": 1}], "x") is None


def test_analyse_builds_a_table_per_series_and_a_plot(tmp_path: Path) -> None:
    experiment = tmp_path / "crl_depth"
    write_run(experiment, "u_maze-depth_4", 4, [0.0, 0.2, 0.4, 0.6])
    write_run(experiment, "u_maze-depth_8", 8, [0.1, 0.1, 0.3, 0.1])
    write_run(experiment, "big_maze-depth_4", 4, [0.0, 0.0, 0.0, 0.05])
    (experiment / "spec.json").write_text(
        json.dumps({"runs": ["u_maze-depth_4", "u_maze-depth_8", "big_maze-depth_4"]})
    )
    series = collect(experiment)
    assert list(series) == ["u_maze", "big_maze"]  # the spec's order
    assert series["u_maze"][4]["~success_rate"] == pytest.approx(0.5)
    assert series["u_maze"][8]["success_rate"] == pytest.approx(0.1)
    lines = analyse(experiment)
    text = "\n".join(lines)
    assert "| 4 | 0.600 | 0.500 | n/a | n/a | 6.0 | 5.0 | n/a | n/a | n/a | 4,000 |" in lines
    assert "| 8 | 0.100 | 0.200 | n/a | n/a | 1.0 | 2.0 |" in text
    assert text.index("`u_maze`") < text.index("`big_maze`")
    assert (experiment / "depth_scaling.png").stat().st_size > 1000


def test_analyse_without_runs_is_empty(tmp_path: Path) -> None:
    assert analyse(tmp_path) == []
