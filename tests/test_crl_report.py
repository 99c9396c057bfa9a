"""The depth-scaling report: series, second-half means, the table and the plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from expc.runtime.crl.report import analyse, collect, second_half_mean, span_means


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


def test_span_means_split_the_steps_into_equal_spans() -> None:
    rows = [{"step": s, "x": float(s)} for s in (100, 200, 300, 400, 500, 600, 700, 800)]
    assert span_means(rows, "x") == [150.0, 350.0, 550.0, 750.0]
    # A span without an evaluation is None, not a zero that would read as a measurement.
    assert span_means([{"step": 100, "x": 1.0}, {"step": 400, "x": 2.0}], "x") == [
        1.0,
        None,
        None,
        2.0,
    ]
    assert span_means([], "x") == [None] * 4


def test_seeds_get_success_through_training_per_span(tmp_path: Path) -> None:
    experiment = tmp_path / "crl_depth"
    # Depth 16 starts behind depth 4 on every seed and ends ahead on every seed.
    for seed, noise in ((0, 0.0), (1, 0.01), (2, -0.02)):
        write_run(experiment, f"u_maze-depth_4-seed_{seed}", 4, [0.4 + noise] * 4)
        write_run(
            experiment,
            f"u_maze-depth_16-seed_{seed}",
            16,
            [0.1 + noise, 0.3 + 2 * noise, 0.5 - noise, 0.7 + noise],
        )
    text = "\n".join(analyse(experiment))
    assert "| 4 | 0.397 | 0.397 | 0.397 | 0.397 |" in text
    assert "| 16 | 0.097 | 0.293 | 0.503 | 0.697 |" in text
    line = next(x for x in text.splitlines() if x.startswith("- depth 16 − depth 4, by span"))
    first, second, third, fourth = line.split(": ", 1)[1].split(", ")
    assert first.startswith("-0.300") and first.endswith("*")
    assert third.startswith("+0.107") and fourth.startswith("+0.300") and fourth.endswith("*")
    # The seeds are drawn as one line of their means with error bars.
    assert (experiment / "depth_scaling.png").stat().st_size > 1000


def test_two_seeds_that_agree_are_not_marked_decisive(tmp_path: Path) -> None:
    experiment = tmp_path / "crl_depth"
    for seed in (0, 1):  # identical differences: a zero-width interval that means little
        write_run(experiment, f"u_maze-depth_4-seed_{seed}", 4, [0.0] * 4)
        write_run(experiment, f"u_maze-depth_64-seed_{seed}", 64, [0.25] * 4)
    text = "\n".join(analyse(experiment))
    line = next(x for x in text.splitlines() if x.startswith("- depth 64 − depth 4, by span"))
    assert "+0.250 ± 0.000" in line and "*" not in line


def test_plot_draws_seeds_as_one_line_with_error_bars(tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.container import ErrorbarContainer

    from expc.runtime.crl.report import _draw

    experiment = tmp_path / "crl_depth"
    for seed in (0, 1, 2):
        for depth in (4, 16):
            write_run(experiment, f"u_maze-depth_{depth}-seed_{seed}", depth, [0.1 * seed] * 4)
    write_run(experiment, "big_maze-depth_4", 4, [0.2] * 4)  # one run: its own line
    fig, axes = plt.subplots(1, 2)
    try:
        _draw(collect(experiment), fig, axes)
        labels = axes[0].get_legend_handles_labels()[1]
        bars = [c for c in axes[0].containers if isinstance(c, ErrorbarContainer)]
    finally:
        plt.close(fig)
    assert len(bars) == 1  # the three u_maze seeds, not three lines
    assert "u_maze (2nd-half mean, 3 seeds, 95% interval)" in labels
    assert not any(label.startswith("u_maze-seed") for label in labels)
    assert "big_maze (2nd-half mean)" in labels
