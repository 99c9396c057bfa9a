"""The long-context analysis of a next-token experiment (the Gated Attention paper's claim
that the gate extends to longer contexts, with YaRN, better than the baseline).

`eval.context_multiples` logs `val_loss_xN` (plain RoPE extrapolation to N times the
training context) and `eval.rope_extension` adds `val_loss_xN_yarn` / `val_loss_xN_pi` on
the same batches. From each run's last evaluation this gives, per series (the runs that
differ only in their seed) and context multiple, each extension's mean loss with its 95%
interval over seeds, the paired gain of each extension over plain extrapolation, and one
plot, `context_extension.png`: loss against context, a line per series and extension. A
spec without longer contexts gets no lines.
"""

from __future__ import annotations

import re
from pathlib import Path

from expc.runtime.intervals import Estimate, estimate, paired, split_seed
from expc.runtime.metrics import read_metrics
from expc.runtime.report import (
    draw_estimates,
    is_finite_number,
    markdown_cell,
    plot_text,
    run_dirs,
    save_figure,
)

_LONG = re.compile(r"val_loss_x(\d+)(?:_([a-z]+))?")
PLAIN = "plain"
PLOT = "context_extension.png"
_BASELINES = ("vanilla", "baseline")

# series -> (multiple, extension) -> seed -> final loss
Table = dict[str, dict[tuple[int, str], dict[int, float]]]


def _collect(experiment_dir: Path) -> Table:
    table: Table = {}
    for run_dir in run_dirs(experiment_dir):
        try:
            rows = read_metrics(run_dir)
        except (OSError, ValueError, RecursionError):
            continue  # the generic report names what it could not read
        evaluated = [r for r in rows if isinstance(r, dict) and is_finite_number(r.get("val_loss"))]
        if not evaluated:
            continue
        last = evaluated[-1]
        series, seed = split_seed(run_dir.name)
        seed = 0 if seed is None else seed
        cells: dict[tuple[int, str], float] = {(1, PLAIN): float(last["val_loss"])}
        for key, value in last.items():
            match = _LONG.fullmatch(key)
            if match and int(match[1]) > 1 and is_finite_number(value):
                cells[(int(match[1]), match[2] or PLAIN)] = float(value)
        if len(cells) > 1:
            for cell, value in cells.items():
                table.setdefault(series, {}).setdefault(cell, {})[seed] = value
    return table


def _shown(value: Estimate, signed: bool = False) -> str:
    if value.n == 0:
        return "-"
    text = f"{value.mean:+.4f}" if signed else f"{value.mean:.4f}"
    return text + (f" ± {value.half_width:.4f}" if value.n > 1 else "")


def _extensions(table: Table) -> list[str]:
    found = {ext for cells in table.values() for (_, ext) in cells if ext != PLAIN}
    return [PLAIN, *sorted(found)]


def plot(table: Table, path: Path, title: str) -> Path:
    """Loss against context multiple (log 2 axis): a colour per series, a line style per
    extension, error bars the 95% interval over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = {PLAIN: "-", "yarn": "--", "pi": ":"}
    fig, ax = plt.subplots(figsize=(6.5, 4.5), dpi=100)
    for index, (series, cells) in enumerate(sorted(table.items())):
        for ext in _extensions(table):
            # Every extension starts from the same loss at the training context.
            multiples = sorted({1} | {m for (m, e) in cells if e == ext and m > 1})
            if len(multiples) < 2 or (1, PLAIN) not in cells:
                continue
            points = [
                estimate(list(cells[(m, ext if m > 1 else PLAIN)].values())) for m in multiples
            ]
            draw_estimates(
                ax,
                multiples,
                points,
                color=f"C{index % 10}",
                linestyle=styles.get(ext, "-."),
                label=plot_text(f"{series}, {ext} ({points[-1].n} seeds)"),
            )
    ax.set_xscale("log", base=2)
    multiples = sorted({m for cells in table.values() for (m, _) in cells})
    ax.set_xticks(multiples, [f"{m}×" for m in multiples])
    ax.set_xlabel("context, multiple of the training context")
    ax.set_ylabel("validation loss (final evaluation)")
    return save_figure(fig, ax, path, title)


def analyse(experiment_dir: Path) -> list[str]:
    experiment_dir = Path(experiment_dir)
    table = _collect(experiment_dir)
    if not table:
        return []
    extensions = _extensions(table)
    gains = [e for e in extensions if e != PLAIN]
    header = "| series | context | " + " | ".join(extensions)
    header += "".join(f" | {e} − plain (paired)" for e in gains) + " |"
    lines = [
        "## Longer contexts",
        "",
        "Validation loss at the last evaluation, at each multiple of the training context: "
        "plain RoPE extrapolation and each `eval.rope_extension`, mean ± 95% interval over "
        "seeds; the gain of an extension is paired seed by seed on the same batches.",
        "",
        header,
        "|---|---|" + "---|" * (len(extensions) + len(gains)),
    ]
    for series, cells in sorted(table.items()):
        for multiple in sorted({m for (m, _) in cells}):
            row = [
                _shown(estimate(list(cells.get((multiple, e), {}).values()))) for e in extensions
            ]
            plain = cells.get((multiple, PLAIN), {})
            for ext in gains:
                other = cells.get((multiple, ext))
                row.append(_shown(paired(plain, other), signed=True) if other else "-")
            lines.append(f"| {markdown_cell(series)} | {multiple}× | " + " | ".join(row) + " |")
    lines += ["", *_between_series(table, extensions)]
    try:
        path = plot(table, experiment_dir / PLOT, f"{experiment_dir.name}: longer contexts")
    except (ValueError, OverflowError):  # values matplotlib cannot draw: the table stands
        return [*lines, ""]
    return [*lines, f"![longer contexts]({path.name})", ""]


def _between_series(table: Table, extensions: list[str]) -> list[str]:
    """Each series minus the baseline at every longer context, paired over seeds; the
    baseline is a series named like one (`vanilla`, `baseline`), else the first by name."""
    names = sorted(table)
    if len(names) < 2:
        return []
    first = next((n for n in names if n in _BASELINES), names[0])
    lines = [
        f"Each series minus {markdown_cell(first)} at the longer contexts, paired over seeds:",
        "",
    ]
    for other in (n for n in names if n != first):
        for (multiple, ext), seeds in sorted(table[other].items()):
            if multiple == 1 or (multiple, ext) not in table[first]:
                continue
            difference = paired(table[first][(multiple, ext)], seeds)
            if difference.n > 1:
                lines.append(
                    f"- {markdown_cell(other)} − {markdown_cell(first)}, {multiple}×, {ext}: "
                    f"{_shown(difference, True)} ({difference.n} seeds)"
                )
    return [*lines, ""] if len(lines) > 2 else []
