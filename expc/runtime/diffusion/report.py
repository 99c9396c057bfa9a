"""The diffusion experiment's part of report.md: tau_gen and tau_mem per n, their log-log fit,
curves against log(step) and against step / n, and sample grids of the smallest n.

Everything is recomputed from each run's metrics.jsonl and config.json, so `expc report`
rebuilds it without the models.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expc.runtime.diffusion.timescales import (
    GENERALIZATION_TOLERANCE,
    MEMORIZATION_THRESHOLD,
    PowerLawFit,
    Timescale,
    fit_exact,
    tau_gen,
    tau_mem,
)
from expc.runtime.intervals import bootstrap_over_seeds
from expc.runtime.metrics import read_metrics
from expc.runtime.report import ReportWarning, is_finite_number, run_dirs


@dataclass(frozen=True)
class RunTimescales:
    """What the report says about one run."""

    name: str
    n: int
    rows: list[dict[str, Any]]
    tau_mem: Timescale | None
    tau_gen: Timescale | None
    threshold: float
    tolerance: float
    steps_planned: int
    seed: int | None = None  # config.json's, for intervals over seeds

    @property
    def steps(self) -> int:
        return int(self.rows[-1]["step"])

    def final(self, key: str) -> float | None:
        value = self.rows[-1].get(key)
        return float(value) if is_finite_number(value) else None

    @property
    def overfit_step(self) -> float | None:
        """The evaluation step with the lowest held-out denoising loss: where the test loss
        turns up while the training loss keeps falling (the onset of overfitting)."""
        steps, losses = _series(self.rows, "test_denoising_loss")
        return steps[losses.index(min(losses))] if losses else None

    def best(self, key: str) -> float | None:
        values = [r[key] for r in self.rows if is_finite_number(r.get(key))]
        return float(min(values)) if values else None


def _series(rows: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of `key`: finite numbers at positive, increasing steps (a row at a
    step not after the one before, which a run does not write, is left out)."""
    pairs: list[tuple[float, float]] = []
    for r in rows:
        step, value = r.get("step"), r.get(key)
        if is_finite_number(step) and is_finite_number(value):
            if step > (pairs[-1][0] if pairs else 0):
                pairs.append((float(step), float(value)))
    return [s for s, _ in pairs], [v for _, v in pairs]


# What reading a config.json that is not as `expc run` writes it raises (json.loads, a missing
# or mistyped key, int() of a string or of inf).
_UNREADABLE = (
    OSError,
    ValueError,
    RecursionError,
    LookupError,
    TypeError,
    AttributeError,
    OverflowError,
)


def _finite(scale: Timescale) -> Timescale | None:
    """None for a crossing that extreme values made NaN (0 / 0 in the interpolation)."""
    return scale if math.isfinite(scale.steps) else None


def collect(experiment_dir: Path) -> list[RunTimescales]:
    """Every run with evaluations, sorted by n, with its timescales."""
    found = []
    for run_dir in run_dirs(Path(experiment_dir)):
        rows = [
            r
            for r in read_metrics(run_dir)
            if is_finite_number(r.get("step")) and not r.get("diverged")
        ]
        if not rows:
            continue
        try:  # a config.json this analysis cannot read: the run is left out
            config = json.loads((run_dir / "config.json").read_text())
            evaluation = config.get("eval", {})
            threshold = float(evaluation.get("memorization_threshold", MEMORIZATION_THRESHOLD))
            tolerance = float(evaluation.get("generalization_tolerance", GENERALIZATION_TOLERANCE))
            n, steps_planned = int(config["data"]["n"]), int(config["train"]["steps"])
        except _UNREADABLE:
            continue
        if n < 1 or not math.isfinite(threshold) or not 0.0 <= tolerance < 1.0:
            continue
        steps, fmem = _series(rows, "memorization")
        quality_steps, quality = _series(rows, "quality")
        found.append(
            RunTimescales(
                name=run_dir.name,
                n=n,
                rows=rows,
                tau_mem=_finite(tau_mem(steps, fmem, threshold)) if steps else None,
                tau_gen=(
                    _finite(tau_gen(quality_steps, quality, tolerance))
                    if len(quality) > 1
                    else None
                ),
                threshold=threshold,
                tolerance=tolerance,
                steps_planned=steps_planned,
                seed=config.get("seed") if isinstance(config.get("seed"), int) else None,
            )
        )
    return sorted(found, key=lambda r: (r.n, r.name))


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:.0f}"


def _slope_interval(runs: list[RunTimescales]) -> list[str]:
    """With several seeds: the tau_mem slope's 95% interval, resampling seeds (each
    resample refits the slope over the runs of the seeds it drew)."""
    by_seed: dict[int, list[RunTimescales]] = {}
    for run in runs:
        if run.seed is not None and run.tau_mem is not None:
            by_seed.setdefault(run.seed, []).append(run)
    if len(by_seed) < 2:
        return []

    def slope(seeds: list[int]) -> float | None:
        chosen = [run for seed in seeds for run in by_seed[seed]]
        fit = fit_exact([r.n for r in chosen], [r.tau_mem for r in chosen])  # type: ignore[misc]
        return fit.slope if fit is not None else None

    found = bootstrap_over_seeds(sorted(by_seed), slope)
    if found is None:
        return [f"- tau_mem slope over {len(by_seed)} seeds: too few exact fits for an interval."]
    low, high, used = found
    side = "includes" if low <= 1.0 <= high else "excludes"
    return [
        f"- tau_mem slope over {len(by_seed)} seeds: 95% bootstrap interval "
        f"[{low:.2f}, {high:.2f}] ({used} of 1000 resamples of the seeds fitted); it {side} "
        "1 (tau_mem proportional to n)."
    ]


def _fit_text(fit: PowerLawFit | None, what: str) -> str:
    if fit is None:
        return f"- {what}: fewer than two n with an exact value, no fit."
    return (
        f"- {what}: slope **{round(fit.slope, 2) + 0.0:.2f}** over {fit.points} values of n "
        "(log-log least squares)."
    )


def _plot_timescales(runs: list[RunTimescales], mem: PowerLawFit | None, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    markers = {"exact": "o", "at_most": "v", "at_least": "^"}
    fig, ax = plt.subplots(figsize=(5.5, 4), dpi=100)
    for label, attribute, color in (("tau_mem", "tau_mem", "C3"), ("tau_gen", "tau_gen", "C0")):
        shown = False
        for run in runs:
            scale = getattr(run, attribute)
            if scale is None:
                continue
            filled = scale.bound == "exact"
            ax.plot(
                run.n,
                scale.steps,
                markers[scale.bound],
                color=color,
                markerfacecolor=color if filled else "none",
                label=None if shown else label,
            )
            shown = True
    try:
        if mem is not None:
            ns = sorted({r.n for r in runs})
            ax.plot(
                ns,
                [mem.predict(n) for n in ns],
                "--",
                color="C3",
                label=f"fit: slope {mem.slope:.2f}",
            )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("training set size n")
        ax.set_ylabel("training steps")
        ax.set_title("timescales (open triangles: bounds)")
        ax.grid(alpha=0.3, which="both")
        if ax.get_legend_handles_labels()[0]:  # nothing measured yet: no empty legend
            ax.legend()
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


def _plot_curves(runs: list[RunTimescales], path: Path) -> Path:
    """Memorization and quality against log(step), and memorization against step / n."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (
        ("memorization", "step", "memorization fraction"),
        ("memorization", "step / n", "memorization fraction"),
        ("quality", "step", "quality distance (lower is better)"),
        ("test_denoising_loss", "step", "denoising loss (solid: test, dashed: train)"),
    )
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5), dpi=100)
    for ax, (key, xlabel, ylabel) in zip(axes.flat, panels, strict=True):
        for index, run in enumerate(runs):
            steps, values = _series(run.rows, key)
            if not steps:
                continue
            xs = [s / run.n for s in steps] if xlabel == "step / n" else steps
            ax.plot(xs, values, marker="o", markersize=2.5, color=f"C{index}", label=f"n = {run.n}")
            if key == "test_denoising_loss":
                train_steps, train_values = _series(run.rows, "train_denoising_loss")
                ax.plot(train_steps, train_values, "--", color=f"C{index}")
        if key == "memorization":
            ax.axhline(runs[0].threshold, color="grey", lw=0.8, ls=":")
        if key == "quality":
            ax.set_yscale("log")
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, which="both")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    try:
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


def analyse(experiment_dir: Path) -> list[str]:
    """Markdown lines for report.md."""
    experiment_dir = Path(experiment_dir)
    runs = collect(experiment_dir)
    if not runs:
        return []
    threshold, tolerance = runs[0].threshold, runs[0].tolerance
    with_mem = [r for r in runs if r.tau_mem is not None]
    mem_fit = fit_exact([r.n for r in with_mem], [r.tau_mem for r in with_mem])
    with_gen = [r for r in runs if r.tau_gen is not None]
    gen_fit = fit_exact([r.n for r in with_gen], [r.tau_gen for r in with_gen])
    bounded = [r for r in with_mem if r.tau_mem.bound != "exact"]
    # A minimum at the last evaluation is no turning point: left out of the fit.
    turned = [r for r in runs if r.overfit_step is not None and r.overfit_step < r.steps]
    overfit_fit = fit_exact(
        [r.n for r in turned], [Timescale(r.overfit_step, "exact") for r in turned]
    )
    lines = [
        "## Memorization and generalization timescales",
        "",
        f"tau_mem: first step where the memorization fraction reaches {threshold:g}; "
        f"tau_gen: first step where the quality distance has made {1 - tolerance:.0%} of its "
        "drop from the first evaluation to its best. Both interpolated in log(step); "
        "`>=` marks a threshold never reached (the last step), `<=` one already met at "
        "the first evaluation.",
        "",
        "| run | n | steps | tau_gen | tau_mem | tau_mem / n | lowest test loss at "
        "| final f_mem | best quality | final quality | final test - train loss | CPU s | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        per_n = (
            _fmt(run.tau_mem.steps / run.n)
            if run.tau_mem and run.tau_mem.bound == "exact"
            else "n/a"
        )
        test, train = run.final("test_denoising_loss"), run.final("train_denoising_loss")
        gap = test - train if test is not None and train is not None else None
        stopped = " (stopped: memorized)" if run.steps < run.steps_planned else ""
        lines.append(
            f"| {run.name} | {run.n} | {run.steps}{stopped} | {run.tau_gen or 'n/a'} "
            f"| {run.tau_mem or 'n/a'} | {per_n} | {_fmt(run.overfit_step)} "
            f"| {_fmt(run.final('memorization'))} "
            f"| {_fmt(run.best('quality'))} | {_fmt(run.final('quality'))} | {_fmt(gap)} "
            f"| {_fmt(run.final('cpu_s'), 4)} | {_fmt(run.final('elapsed_s'), 4)} |"
        )
    cpu = sum(r.final("cpu_s") or 0.0 for r in runs)
    wall = sum(r.final("elapsed_s") or 0.0 for r in runs)
    lines += [
        "",
        _fit_text(mem_fit, "tau_mem against n"),
        *_slope_interval(with_mem),
        _fit_text(gen_fit, "tau_gen against n"),
        _fit_text(overfit_fit, "step of the lowest test denoising loss against n"),
        f"- Budget: {cpu / 60:.1f} CPU minutes, {wall / 60:.1f} wall minutes over "
        f"{len(runs)} runs (training and evaluations).",
        "",
    ]
    if bounded:
        lines += [
            "Left out of the tau_mem fit (a bound, not a crossing): "
            + ", ".join(f"n = {r.n} ({r.tau_mem})" for r in bounded)
            + ".",
            "",
        ]
    for plot, name, alt in (
        (lambda path: _plot_timescales(runs, mem_fit, path), "timescales.png", "timescales"),
        (lambda path: _plot_curves(runs, path), "timescale_curves.png", "curves"),
    ):
        try:
            lines += [f"![{alt}]({plot(experiment_dir / name).name})", ""]
        except (ValueError, OverflowError) as error:  # values matplotlib cannot scale
            warnings.warn(ReportWarning(f"{name} not drawn: {error!r}"), stacklevel=2)
    smallest = runs[0]
    grids = sorted(
        g
        for g in (experiment_dir / smallest.name / "samples").glob("step_*.png")
        if g.stem.split("_")[1].isascii() and g.stem.split("_")[1].isdigit()
    )
    if grids:
        lines += [
            f"Samples of `{smallest.name}` (n = {smallest.n}), each row above the training "
            "images they are nearest to; early, then late:",
            "",
        ]
        for grid in (grids[0], grids[-1]) if len(grids) > 1 else (grids[0],):
            step = int(grid.stem.split("_")[1])
            lines += [
                f"step {step}:",
                "",
                f"![{smallest.name} step {step}]({smallest.name}/samples/{grid.name})",
                "",
            ]
    return lines
