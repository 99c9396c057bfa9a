"""The depth-scaling analysis of a CRL experiment: a depth-vs-performance table and plot.

`write_report` calls `analyse` (named in the backend as "expc.runtime.crl.report:analyse").
Runs that differ only in `model.depth` form one series (one task, say); each series
becomes a column group of the table and a line of the plot.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from expc.runtime.metrics import read_metrics
from expc.runtime.report import run_dirs

COLUMNS = (
    ("success_rate", "success", "{:.3f}"),
    ("time_at_goal", "time at goal", "{:.1f}"),
    ("critic_loss", "critic loss", "{:.3f}"),
    ("categorical_accuracy", "accuracy", "{:.3f}"),
    ("env_steps_per_s", "env steps/s", "{:.0f}"),
)


def _series_label(run_name: str) -> str:
    parts = [p for p in run_name.split("-") if not p.startswith("depth_")]
    return "-".join(parts) or "main"


def collect(experiment_dir: Path) -> dict[str, dict[int, dict[str, Any]]]:
    """series label -> depth -> the run's final metrics row (plus its `run` name)."""
    series: dict[str, dict[int, dict[str, Any]]] = {}
    for run_dir in run_dirs(Path(experiment_dir)):  # the spec's order
        rows = read_metrics(run_dir)
        config_path = run_dir / "config.json"
        if not rows or not config_path.exists():
            continue
        config = json.loads(config_path.read_text())
        depth = config.get("model", {}).get("depth")
        if depth is None:
            continue
        final = {**rows[-1], "run": run_dir.name}
        series.setdefault(_series_label(run_dir.name), {})[depth] = final
    return series


def _cell(row: dict[str, Any], key: str, fmt: str) -> str:
    value = row.get(key)
    return fmt.format(value) if isinstance(value, int | float) else "n/a"


def plot(series: dict[str, dict[int, dict[str, Any]]], path: Path) -> Path:
    """Success rate and time at goal against depth (log scale), one line per series."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    for ax, (key, label) in zip(
        axes,
        (("success_rate", "success rate"), ("time_at_goal", "time at goal (steps)")),
        strict=True,
    ):
        for name, by_depth in series.items():
            points = [(d, r[key]) for d, r in sorted(by_depth.items()) if r.get(key) is not None]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", label=name)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("depth (Dense layers in residual blocks)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"{path.parent.name}: final evaluation against depth")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def analyse(experiment_dir: Path) -> list[str]:
    """Markdown lines: the depth table of every series, and the plot."""
    experiment_dir = Path(experiment_dir)
    series = collect(experiment_dir)
    if not series:
        return []
    lines = ["## Depth scaling", ""]
    for name, by_depth in series.items():
        lines += [f"`{name}` (final evaluation):", ""]
        lines.append("| depth | " + " | ".join(title for _, title, _ in COLUMNS) + " | env steps |")
        lines.append("|---|" + "---|" * (len(COLUMNS) + 1))
        for depth, row in sorted(by_depth.items()):
            cells = [_cell(row, key, fmt) for key, _, fmt in COLUMNS]
            cells.append(_cell(row, "env_steps", "{:,}"))
            lines.append(f"| {depth} | " + " | ".join(cells) + " |")
        lines.append("")
    path = plot(series, experiment_dir / "depth_scaling.png")
    return [*lines, f"![depth scaling]({path.name})", ""]
