"""report.md and plots for an experiment folder, rebuilt from metrics.jsonl files alone."""

from __future__ import annotations

import importlib
import json
import math
import statistics
from pathlib import Path
from typing import Any

from expc.runtime.metrics import read_metrics

# Columns of the comparison table, in this order when present.
_TABLE_ORDER = (
    "step",
    "train_loss",
    "val_loss",
    "val_ppl",
    "first_token_attention",
    "max_activation",
    "gate_score",
    "elapsed_s",
)
_NOT_PLOTTED = {"step", "tokens", "lr", "elapsed_s"}


def _format(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:.1f}"
    return str(value)


def run_dirs(experiment_dir: Path) -> list[Path]:
    """Run folders, in the spec's order when `expc run` recorded it, then by name."""
    found = sorted(p for p in Path(experiment_dir).iterdir() if (p / "metrics.jsonl").exists())
    info = Path(experiment_dir) / "spec.json"
    order = json.loads(info.read_text()).get("runs", []) if info.exists() else []
    rank = {name: index for index, name in enumerate(order)}
    return sorted(found, key=lambda p: (rank.get(p.name, len(rank)), p.name))


def profile_label(info: dict[str, Any]) -> str:
    """How an experiment folder's runs were configured, from its spec.json: the profile
    (`default` for none) and the `--set` overrides on top."""
    label = f"`{info['profile']}`" if info.get("profile") else "default"
    sets = info.get("sets") or []
    if sets:
        label += " with " + ", ".join(f"`--set {s}`" for s in sets)
    return label


def plot_curves(experiment_dir: Path, runs: dict[str, list[dict[str, Any]]]) -> list[Path]:
    """One PNG per metric, every run a line against training step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted({k for rows in runs.values() for row in rows for k in row} - _NOT_PLOTTED)
    # A curve needs two points: runs that log one row (a measurement, not a training
    # run) have their numbers in the table only.
    keys = [k for k in keys if any(sum(k in row for row in rows) > 1 for rows in runs.values())]
    written = []
    for key in keys:
        fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
        for name, rows in runs.items():
            points = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", markersize=3, label=name)
        ax.set_xlabel("step")
        ax.set_ylabel(key)
        ax.set_title(f"{experiment_dir.name}: {key}")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = experiment_dir / f"{key}.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written


def plot_attention_maps(maps: list, path: Path, title: str) -> Path:
    """One heatmap per layer: query position (rows) x key position (columns), averaged over
    heads. A bright first column is an attention sink."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import PowerNorm

    columns = min(4, len(maps))
    rows = (len(maps) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3 * rows), dpi=100, squeeze=False)
    for index, ax in enumerate(axes.flat):
        if index >= len(maps):
            ax.axis("off")
            continue
        attention = maps[index].numpy()
        # A power norm keeps weak rows visible next to the first query, which sees only itself.
        ax.imshow(attention, cmap="viridis", norm=PowerNorm(gamma=0.4, vmin=0.0, vmax=1.0))
        sink = float(attention[1:, 0].mean()) if attention.shape[0] > 1 else float("nan")
        ax.set_title(f"layer {index}: first-token {sink:.2f}", fontsize=9)
        ax.set_xlabel("key")
        ax.set_ylabel("query")
    fig.suptitle(f"{title}: attention averaged over heads")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _seed_groups(experiment_dir: Path, names: list[str]) -> dict[str, list[str]]:
    """Runs that differ only in their seed, keyed by a label made of the other names."""
    groups: dict[str, list[str]] = {}
    for name in names:
        try:
            config = json.loads((experiment_dir / name / "config.json").read_text())
        except (OSError, ValueError):
            continue
        key = json.dumps(
            {k: v for k, v in config.items() if k not in ("name", "seed")}, sort_keys=True
        )
        groups.setdefault(key, []).append(name)
    labelled = {}
    for members in groups.values():
        parts = [p for p in members[0].split("-") if not p.startswith("seed_")]
        labelled["-".join(parts) or "main"] = members
    return labelled


def _seed_table(experiment_dir: Path, finals: dict[str, dict], columns: list[str]) -> list[str]:
    """Mean ± sample standard deviation over seeds, when some runs differ only by seed."""
    groups = _seed_groups(experiment_dir, list(finals))
    if not any(len(members) > 1 for members in groups.values()):
        return []
    columns = [c for c in columns if c not in ("step", "elapsed_s")]
    lines = ["Mean ± standard deviation over seeds:", ""]
    lines.append("| runs | seeds | " + " | ".join(columns) + " |")
    lines.append("|---|---|" + "---|" * len(columns))
    for label, members in groups.items():
        cells = []
        for column in columns:
            values = [
                finals[m][column] for m in members if isinstance(finals[m].get(column), float)
            ]
            if not values:
                cells.append("n/a")
            elif len(values) == 1:
                cells.append(_format(values[0]))
            else:
                cells.append(f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}")
        lines.append(f"| {label} | {len(members)} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def write_report(experiment_dir: Path) -> Path:
    """Write `report.md` (final metrics of every run side by side, plus curves)."""
    experiment_dir = Path(experiment_dir)
    runs = {d.name: read_metrics(d) for d in run_dirs(experiment_dir)}
    runs = {name: rows for name, rows in runs.items() if rows}
    finals = {name: rows[-1] for name, rows in runs.items()}
    present = {k for row in finals.values() for k in row}
    columns = [k for k in _TABLE_ORDER if k in present]
    columns += sorted(present - set(columns) - {"tokens", "lr"})
    lines = [f"# {experiment_dir.name}", ""]
    spec_note = experiment_dir / "spec.json"
    info = json.loads(spec_note.read_text()) if spec_note.exists() else {}
    if info:
        lines += [f"Spec: `{info['source']}` (sha256 `{info['sha256'][:12]}`)", ""]
        lines += [f"Profile: {profile_label(info)}", ""]
    lines += ["Final evaluation of each run:", ""]
    lines.append("| run | " + " | ".join(columns) + " |")
    lines.append("|---|" + "---|" * len(columns))
    for name, row in finals.items():
        lines.append(f"| {name} | " + " | ".join(_format(row.get(c)) for c in columns) + " |")
    lines.append("")
    lines += _seed_table(experiment_dir, finals, columns)
    for path in plot_curves(experiment_dir, runs):
        lines += [f"![{path.stem}]({path.name})", ""]
    for name in finals:
        if (experiment_dir / name / "attention_maps.png").exists():
            lines += [
                f"Attention maps of `{name}`:",
                "",
                f"![{name}]({name}/attention_maps.png)",
                "",
            ]
    if info.get("report"):
        lines += _backend_analysis(info["report"], experiment_dir)
    report = experiment_dir / "report.md"
    report.write_text("\n".join(lines))
    return report


def _backend_analysis(target: str, experiment_dir: Path) -> list[str]:
    """The backend's own report lines: `module:function`, called with the experiment folder."""
    module_name, _, function = target.partition(":")
    if not module_name.startswith("expc.runtime."):  # spec.json is data, not a code path
        raise ValueError(f"report analysis {target!r} is not part of expc.runtime")
    analyse = getattr(importlib.import_module(module_name), function)
    return list(analyse(experiment_dir))
