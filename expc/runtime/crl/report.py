"""The depth-scaling analysis of a CRL experiment: a depth-vs-performance table and plot.

`write_report` calls `analyse` (named in the backend as "expc.runtime.crl.report:analyse").
Runs that differ only in `model.depth` form one series (one task, say); each series gets a
table and a line in the plot. One evaluation of one seed is noisy, so next to the final
evaluation the table gives the mean over the evaluations of the second half of training.
"""

from __future__ import annotations

import json
import math
import statistics
import warnings
from pathlib import Path
from typing import Any

from expc.runtime.intervals import (
    MIN_SEEDS_FOR_VERDICT,
    by_seed,
    estimate,
    paired,
    split_seed,
    verdict,
)
from expc.runtime.metrics import read_metrics
from expc.runtime.report import ReportWarning, is_finite_number, run_dirs

# (metric, column title, format); "~" columns are second-half means.
COLUMNS = (
    ("success_rate", "success", "{:.3f}"),
    ("~success_rate", "success, 2nd-half mean", "{:.3f}"),
    ("detour_success_rate", "detour success", "{:.3f}"),
    ("~detour_success_rate", "detour success, 2nd-half mean", "{:.3f}"),
    ("time_at_goal", "time at goal", "{:.1f}"),
    ("~time_at_goal", "time at goal, 2nd-half mean", "{:.1f}"),
    ("critic_loss", "critic loss", "{:.3f}"),
    ("categorical_accuracy", "accuracy", "{:.3f}"),
    ("env_steps_per_s", "env steps/s", "{:.0f}"),
    ("env_steps", "env steps", "{:,}"),
)


def _series_label(run_name: str) -> str:
    parts = [p for p in run_name.split("-") if not p.startswith("depth_")]
    return "-".join(parts) or "main"


def second_half_mean(rows: list[dict[str, Any]], key: str) -> float | None:
    """Mean of `key` over the evaluations after the first half of the run's steps (rows
    without a numeric step, and values that are not finite numbers, do not count)."""
    rows = [r for r in rows if is_finite_number(r.get("step"))]
    if not rows:
        return None
    last = rows[-1]["step"]
    # NaN (no such goals) does not count, nor anything else that is not a finite number.
    values = [r[key] for r in rows if r["step"] > last / 2 and is_finite_number(r.get(key))]
    return statistics.mean(values) if values else None


# Through training, the evaluations fall into this many equal spans of the run's steps.
SPANS = 4


def span_means(rows: list[dict[str, Any]], key: str, spans: int = SPANS) -> list[float | None]:
    """The mean of `key` over the evaluations in each of `spans` equal spans of the run's
    steps ((0, 1/4], (1/4, 1/2], ... of the last step); None for a span without one. This
    shows where in training one depth overtakes another, which a final figure hides."""
    rows = [r for r in rows if is_finite_number(r.get("step"))]
    if not rows or rows[-1]["step"] <= 0:
        return [None] * spans
    last = rows[-1]["step"]
    found: list[list[float]] = [[] for _ in range(spans)]
    for row in rows:
        if row["step"] > 0 and is_finite_number(row.get(key)):
            index = min(spans - 1, max(0, math.ceil(row["step"] / last * spans) - 1))
            found[index].append(float(row[key]))
    return [statistics.mean(values) if values else None for values in found]


def collect(experiment_dir: Path) -> dict[str, dict[int, dict[str, Any]]]:
    """series label -> depth -> the run's final metrics row, its second-half means under
    "~metric", and its `run` name."""
    series: dict[str, dict[int, dict[str, Any]]] = {}
    for run_dir in run_dirs(Path(experiment_dir)):  # the spec's order
        # Rows without a numeric step (metrics.jsonl is data, not always ours) are left out.
        rows = [r for r in read_metrics(run_dir) if is_finite_number(r.get("step"))]
        if not rows:
            continue
        try:
            config = json.loads((run_dir / "config.json").read_text())
        except (OSError, ValueError, RecursionError):
            continue
        model = config.get("model") if isinstance(config, dict) else None
        depth = model.get("depth") if isinstance(model, dict) else None
        if not isinstance(depth, int) or isinstance(depth, bool):
            continue
        final = {**rows[-1], "run": run_dir.name}
        for key in ("success_rate", "detour_success_rate", "time_at_goal"):
            final[f"~{key}"] = second_half_mean(rows, key)
        final["spans"] = span_means(rows, "success_rate")
        series.setdefault(_series_label(run_dir.name), {})[depth] = final
    return series


def seed_lines(series: dict[str, dict[int, dict[str, Any]]]) -> list[str]:
    """When series differ only by their seed: per depth, the second-half success rate and
    time at goal as mean ± the 95% interval over seeds, and each depth against the
    shallowest, paired seed by seed, with a verdict."""
    lines: list[str] = []
    for base, seeds in by_seed(series).items():
        depths = sorted({d for by_depth in seeds.values() for d in by_depth})
        lines += [f"`{base}` over {len(seeds)} seeds (second-half means, 95% interval):", ""]
        lines += ["| depth | seeds | success | time at goal |", "|---|---|---|---|"]
        for depth in depths:
            cells = []
            for key in ("~success_rate", "~time_at_goal"):
                values = [
                    float(by_depth[depth][key])
                    for by_depth in seeds.values()
                    if depth in by_depth and is_finite_number(by_depth[depth].get(key))
                ]
                found = estimate(values)
                cells.append(f"{found.mean:.3f} ± {found.half_width:.3f}" if found.n > 1 else "n/a")
            count = sum(depth in by_depth for by_depth in seeds.values())
            lines.append(f"| {depth} | {count} | " + " | ".join(cells) + " |")
        lines.append("")
        shallow = depths[0]
        for depth in depths[1:]:
            values = [
                {
                    seed: float(by_depth[d]["~success_rate"])
                    for seed, by_depth in seeds.items()
                    if d in by_depth and is_finite_number(by_depth[d].get("~success_rate"))
                }
                for d in (shallow, depth)
            ]
            text = verdict(
                f"depth {shallow}", f"depth {depth}", "success", paired(values[0], values[1])
            )
            lines.append(f"- {text}")
        lines.append("")
        lines += _span_lines(seeds, depths)
    return lines


def _span_lines(seeds: dict[int, dict[int, dict[str, Any]]], depths: list[int]) -> list[str]:
    """Success through training: per depth, the mean over seeds in each span of the run's
    steps, then each depth minus the shallowest, paired seed by seed, span by span."""

    def values(depth: int, span: int) -> dict[int, float]:
        found = {}
        for seed, by_depth in seeds.items():
            spans = by_depth.get(depth, {}).get("spans") or []
            if span < len(spans) and is_finite_number(spans[span]):
                found[seed] = float(spans[span])
        return found

    titles = [f"steps {i}/{SPANS}–{i + 1}/{SPANS}" for i in range(SPANS)]
    lines = [
        f"Success through training (mean over seeds of each span's evaluations; the runs' "
        f"steps in {SPANS} equal spans):",
        "",
        "| depth | " + " | ".join(titles) + " |",
        "|---|" + "---|" * SPANS,
    ]
    for depth in depths:
        cells = []
        for span in range(SPANS):
            found = estimate(list(values(depth, span).values()))
            cells.append(f"{found.mean:.3f}" if found.n else "n/a")
        lines.append(f"| {depth} | " + " | ".join(cells) + " |")
    lines.append("")
    shallow = depths[0]
    for depth in depths[1:]:
        cells = []
        for span in range(SPANS):
            difference = paired(values(shallow, span), values(depth, span))
            if difference.n > 1:
                # As `verdict`: two seeds that agree give a zero-width interval, no finding.
                decisive = difference.n >= MIN_SEEDS_FOR_VERDICT and difference.excludes_zero()
                mark = "*" if decisive else ""
                cells.append(f"{difference.mean:+.3f} ± {difference.half_width:.3f}{mark}")
            else:
                cells.append("n/a")
        lines.append(f"- depth {depth} − depth {shallow}, by span: " + ", ".join(cells))
    if depths[1:]:
        lines += [
            "",
            f"(* the 95% interval excludes 0; never marked with fewer than "
            f"{MIN_SEEDS_FOR_VERDICT} seeds)",
            "",
        ]
    return lines


def _cell(row: dict[str, Any], key: str, fmt: str) -> str:
    value = row.get(key)
    return fmt.format(value) if is_finite_number(value) else "n/a"


def plot(series: dict[str, dict[int, dict[str, Any]]], path: Path) -> Path:
    """Success rate and time at goal against depth (log scale), one line per series:
    second-half means, with the final evaluation as open markers; series that differ only
    in their seed become one line of their mean with 95% error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    try:
        _draw(series, fig, axes)
        fig.suptitle(f"{path.parent.name}: evaluation against depth")
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


def _draw_seed_means(
    seeds: dict[int, dict[int, dict[str, Any]]], key: str, name: str, ax: Any
) -> None:
    """One series over seeds: the mean second-half value per depth, with its 95% interval
    as error bars (a line per seed would hide the answer in the seeds' spread)."""
    points = []
    for depth in sorted({d for by_depth in seeds.values() for d in by_depth}):
        values = [
            float(by_depth[depth][f"~{key}"])
            for by_depth in seeds.values()
            if depth in by_depth and is_finite_number(by_depth[depth].get(f"~{key}"))
        ]
        found = estimate(values)
        if found.n:
            width = found.half_width if math.isfinite(found.half_width) else 0.0
            points.append((depth, found.mean, width))
    if points:
        depths, means, widths = zip(*points, strict=True)
        ax.errorbar(
            depths, means, yerr=widths, marker="o", capsize=3,
            label=f"{name} (2nd-half mean, {len(seeds)} seeds, 95% interval)",
        )  # fmt: skip


def _draw(series: dict[str, dict[int, dict[str, Any]]], fig: Any, axes: Any) -> None:
    panels = (("success_rate", "success rate"), ("time_at_goal", "time at goal (steps)"))
    grouped = by_seed(series)
    seeded = {name for name in series if split_seed(name)[0] in grouped}
    for ax, (key, label) in zip(axes, panels, strict=True):
        for base, seeds in grouped.items():
            _draw_seed_means(seeds, key, base, ax)
        for name, by_depth in series.items():
            if name in seeded:
                continue
            depths = sorted(by_depth)
            means = [
                (d, by_depth[d][f"~{key}"])
                for d in depths
                if is_finite_number(by_depth[d].get(f"~{key}"))
            ]
            finals = [
                (d, by_depth[d][key]) for d in depths if is_finite_number(by_depth[d].get(key))
            ]
            if means:
                (line,) = ax.plot(
                    *zip(*means, strict=True), marker="o", label=f"{name} (2nd-half mean)"
                )
                if finals:
                    style = {"linestyle": "none", "marker": "o", "markerfacecolor": "none"}
                    ax.plot(
                        *zip(*finals, strict=True),
                        **style,
                        color=line.get_color(),
                        label=f"{name} (final)",
                    )
        depths = sorted({d for by_depth in series.values() for d in by_depth})
        if depths[0] > 0:  # depth 0 (no residual blocks) has no place on a log axis
            ax.set_xscale("log", base=2)
        ax.set_xticks(depths, [str(d) for d in depths])
        ax.minorticks_off()
        ax.set_xlabel("depth (Dense layers in residual blocks)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)


def analyse(experiment_dir: Path) -> list[str]:
    """Markdown lines: the depth table of every series, and the plot."""
    experiment_dir = Path(experiment_dir)
    series = collect(experiment_dir)
    if not series:
        return []
    lines = ["## Depth scaling", ""]
    for name, by_depth in series.items():
        lines += [f"`{name}`:", ""]
        lines.append("| depth | " + " | ".join(title for _, title, _ in COLUMNS) + " |")
        lines.append("|---|" + "---|" * len(COLUMNS))
        for depth, row in sorted(by_depth.items()):
            cells = [_cell(row, key, fmt) for key, _, fmt in COLUMNS]
            lines.append(f"| {depth} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += seed_lines(series)
    try:
        path = plot(series, experiment_dir / "depth_scaling.png")
    except (ValueError, OverflowError) as error:  # values matplotlib cannot scale
        warnings.warn(ReportWarning(f"depth scaling plot not drawn: {error!r}"), stacklevel=2)
        return lines
    return [*lines, f"![depth scaling]({path.name})", ""]
