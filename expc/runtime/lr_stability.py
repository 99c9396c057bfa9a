"""The learning-rate stability analysis of a next-token experiment (the Gated Attention
paper's claim that the gate tolerates learning rates at which the baseline spikes).

`write_report` calls `analyse` ("expc.runtime.lr_stability:analyse"). Runs that differ only
in `train.lr` (and their seed) form one series: a variant, say. For each learning rate the
table gives the loss spikes and divergences of every seed, and each series gets its largest
stable learning rate: the largest one at which no seed spiked or diverged, with every
smaller one stable too, and `lr_stability.png` draws each series' final validation loss
against the learning rate. A spec with no learning-rate sweep gets no lines.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from expc.runtime.intervals import estimate, split_seed
from expc.runtime.metrics import read_metrics
from expc.runtime.report import (
    draw_estimates,
    is_finite_number,
    markdown_cell,
    plot_text,
    run_dirs,
    save_figure,
)


def _series_label(run_name: str) -> str:
    base, _ = split_seed(run_name)
    parts = [p for p in base.split("-") if not p.startswith("lr_")]
    return "-".join(parts) or "main"


def _series_key(config: dict[str, Any]) -> str:
    """A run's config without its name, seed and learning rate."""
    rest = {k: v for k, v in config.items() if k not in ("name", "seed")}
    train = rest.get("train")
    if isinstance(train, dict):
        rest["train"] = {k: v for k, v in train.items() if k != "lr"}
    return json.dumps(rest, sort_keys=True)


# A byte-level model that predicts worse than uniform over the 256 bytes has blown up even
# without a non-finite loss or a spike the detector saw (one before its window filled).
UNIFORM_LOSS = math.log(256)
PLOT = "lr_stability.png"


class _Outcome:
    """One run's end: its loss spikes, whether it diverged or blew up, its last validation
    loss."""

    def __init__(self, rows: list[dict[str, Any]]):
        self.diverged = any(row.get("diverged") for row in rows)
        spikes = [row["loss_spikes"] for row in rows if is_finite_number(row.get("loss_spikes"))]
        self.spikes = int(spikes[-1]) if spikes else None
        losses = [row["val_loss"] for row in rows if is_finite_number(row.get("val_loss"))]
        self.val_loss = float(losses[-1]) if losses and not self.diverged else math.nan
        self.blown_up = self.val_loss > UNIFORM_LOSS

    @property
    def stable(self) -> bool:
        return not self.diverged and not self.spikes and not self.blown_up

    @property
    def cell(self) -> str:
        if self.diverged:
            return "div"
        spikes = "?" if self.spikes is None else str(self.spikes)
        return f"{spikes} (up)" if self.blown_up else spikes


def _collect(experiment_dir: Path) -> dict[str, dict[float, list[_Outcome]]]:
    """series label -> learning rate -> the outcome of each seed's run."""
    series: dict[str, tuple[str, dict[float, list[_Outcome]]]] = {}
    for run_dir in run_dirs(experiment_dir):
        try:
            config = json.loads((run_dir / "config.json").read_text())
            lr = float(config["train"]["lr"])
            rows = read_metrics(run_dir)
        except (OSError, ValueError, KeyError, TypeError, RecursionError):
            continue  # not a run this analysis can read; the generic report still shows it
        if not rows or not isinstance(config, dict):
            continue
        key = _series_key(config)
        label, by_lr = series.setdefault(key, (_series_label(run_dir.name), {}))
        by_lr.setdefault(lr, []).append(_Outcome(rows))
    return {label: by_lr for label, by_lr in series.values() if len(by_lr) > 1}


def largest_stable(by_lr: dict[float, list[_Outcome]]) -> float | None:
    """The largest learning rate with every seed stable there and at every smaller one."""
    found = None
    for lr in sorted(by_lr):
        if not all(outcome.stable for outcome in by_lr[lr]):
            break
        found = lr
    return found


def analyse(experiment_dir: Path) -> list[str]:
    series = _collect(Path(experiment_dir))
    if not series:
        return []
    lines = [
        "## Learning-rate stability",
        "",
        "A run is stable when it did not diverge (a non-finite loss), had no loss spike "
        "(`train.spike_factor` x the running median) and ends better than uniform guessing "
        "(validation loss below ln 256). Per learning rate: each seed's spikes (`div` where "
        "it diverged, `(up)` where it ended worse than uniform), then the mean final "
        "validation loss of the runs that did not diverge, with its 95% interval over seeds.",
        "",
        "| series | lr | seeds | spikes per seed | stable | final val loss |",
        "|---|---|---|---|---|---|",
    ]
    summary = []
    for label, by_lr in series.items():
        for lr in sorted(by_lr):
            outcomes = by_lr[lr]
            spikes = ", ".join(o.cell for o in outcomes)
            stable = sum(o.stable for o in outcomes)
            loss = estimate([o.val_loss for o in outcomes])
            shown = "-" if loss.n == 0 else f"{loss.mean:.4f}"
            if loss.n > 1:
                shown += f" ± {loss.half_width:.4f}"
            lines.append(
                f"| {markdown_cell(label)} | {lr:g} | {len(outcomes)} | {spikes} "
                f"| {stable}/{len(outcomes)} | {shown} |"
            )
        best = largest_stable(by_lr)
        if best is None:
            summary.append(
                f"- {markdown_cell(label)}: unstable already at the smallest lr, {min(by_lr):g}"
            )
        elif best == max(by_lr):
            summary.append(f"- {markdown_cell(label)}: stable at every lr swept, up to {best:g}")
        else:
            summary.append(f"- {markdown_cell(label)}: largest stable lr **{best:g}**")
    lines += [
        "",
        "Largest stable learning rate (every seed, every smaller lr too):",
        "",
        *summary,
        "",
    ]
    try:
        path = plot(series, Path(experiment_dir) / PLOT, f"{Path(experiment_dir).name}: stability")
    except (ValueError, OverflowError):  # values matplotlib cannot draw: the tables stand
        return lines
    return [*lines, f"![final validation loss against the learning rate]({path.name})", ""]


def plot(series: dict[str, dict[float, list[_Outcome]]], path: Path, title: str) -> Path:
    """Final validation loss against the learning rate (log axis), a line per series with
    the 95% interval over seeds; a learning rate where some seed was unstable is marked with
    an x, on the uniform-guessing line where no seed has a final loss (all diverged)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5), dpi=100)
    for index, (label, by_lr) in enumerate(sorted(series.items())):
        colour = f"C{index % 10}"
        losses = {lr: estimate([o.val_loss for o in by_lr[lr]]) for lr in sorted(by_lr)}
        drawn = {lr: loss for lr, loss in losses.items() if loss.n}
        if drawn:
            seeds = max(loss.n for loss in drawn.values())
            draw_estimates(
                ax,
                list(drawn),
                list(drawn.values()),
                color=colour,
                label=plot_text(f"{label} ({seeds} seeds)"),
            )
        for lr, loss in losses.items():
            if not all(outcome.stable for outcome in by_lr[lr]):
                y = loss.mean if loss.n else UNIFORM_LOSS
                ax.plot([lr], [y], marker="x", markersize=10, color=colour, linestyle="none")
    ax.axhline(UNIFORM_LOSS, color="grey", linewidth=0.8, linestyle=":", label="uniform guessing")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (x: some seed spiked, diverged or blew up)")
    ax.set_ylabel("final validation loss")
    return save_figure(fig, ax, path, title)
