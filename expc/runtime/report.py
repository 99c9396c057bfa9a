"""report.md and plots for an experiment folder, rebuilt from metrics.jsonl files alone.

Runs are data: whatever a metrics.jsonl holds, the report is written inside the experiment
folder and stays small. A metric name becomes a file name only from a safe alphabet; rows and
values the report cannot use (not an object, no numeric step, non-finite or nested values)
are skipped, and what was skipped is listed in report.md and given as one `ReportWarning`.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import re
import statistics
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

from expc.runtime.intervals import estimate, paired, verdict
from expc.runtime.metrics import read_metrics
from expc.runtime.stability import stability_lines

MAX_NAME = 64  # characters of a metric name in the report (longer: cut, with a hash)
MAX_CELL = 200  # characters of a table cell (a longer string value is elided)
MAX_COLUMNS = 64  # metrics in the table
MAX_PLOTS = 64  # metrics plotted
MAX_NOTES = 20  # lines of the "skipped" note in report.md
MAX_PAIRS = 60  # lines of paired differences in report.md


class ReportWarning(UserWarning):
    """Rows or values of metrics.jsonl that the report skipped."""


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
# Flags (`diverged`, `blown_up`) are said in words under the table, not drawn as curves.
_NOT_PLOTTED = {"step", "tokens", "lr", "elapsed_s", "diverged", "blown_up"}


def is_finite_number(value: Any) -> bool:
    """An int or float (not a bool) that is finite, also as a float."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _fixed(value: float) -> str:
    return f"{value:.4f}" if abs(value) < 1e15 else f"{value:.4g}"


def _format(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "n/a"
        if abs(value) >= 1e15:
            return f"{value:.4g}"
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:.1f}"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**18:
        return f"{float(value):.4g}" if is_finite_number(value) else "n/a"
    return str(value)


# Control characters and line separators: a table row is one line.
_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _plain(text: str, limit: int = MAX_CELL) -> str:
    """One line of at most `limit` characters, encodable as UTF-8 (no lone surrogates)."""
    text = _BREAKS.sub(" ", text.encode("utf-8", "replace").decode("utf-8"))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def markdown_cell(text: str, limit: int = MAX_CELL) -> str:
    """`text` as literal markdown inside a table cell (or a list item)."""
    text = _plain(text, limit).replace("\\", "\\\\").replace("|", "\\|").replace("`", "\\`")
    return text.replace("<", "&lt;").replace(">", "&gt;")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def metric_name(key: str) -> str:
    """How the report names a metric: at most MAX_NAME characters, a long name cut and
    followed by a hash of it, so that two long names stay apart."""
    return key if len(key) <= MAX_NAME else key[: MAX_NAME - 9] + "…" + _digest(key)[:8]


_SAFE_STEM = re.compile(rf"[A-Za-z0-9_][A-Za-z0-9_.-]{{0,{MAX_NAME - 1}}}")


def file_stem(key: str, taken: set[str]) -> str:
    """A file name (without .png) for a metric, unique among `taken` (compared ignoring
    case, which is then updated): the name itself when it is a short name of letters,
    digits, `_`, `.` and `-`; otherwise those characters of it and a hash of the name."""
    if _SAFE_STEM.fullmatch(key) and ".." not in key:
        stem = key
    else:
        safe = re.sub(r"[^A-Za-z0-9_-]+", "_", key)[:40].strip("_-") or "metric"
        stem = f"{safe}-{_digest(key)[:10]}"
    unique, count = stem, 1
    while unique.lower() in taken:
        count += 1
        unique = f"{stem}-{count}"
    taken.add(unique.lower())
    return unique


def _inside(folder: Path, path: Path) -> bool:
    """Whether `path` (a file to write, after symlinks) lies directly in `folder`."""
    return path.resolve().parent == folder.resolve()


class _Skipped:
    """What the report left out, counted by run and reason, with the first example."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()
        self.first: dict[tuple[str, str], str] = {}

    def add(self, where: str, reason: str, example: str = "") -> None:
        self.counts[where, reason] += 1
        self.first.setdefault((where, reason), example)

    def lines(self) -> list[str]:
        out = []
        for (where, reason), count in self.counts.items():
            example = self.first[where, reason]
            if count > 1:
                detail = f" ({count} times" + (f", first {example})" if example else ")")
            else:
                detail = f" ({example})" if example else ""
            out.append(f"{where}: {reason}{detail}")
        return out


def _clean_rows(run: str, rows: list[Any], skipped: _Skipped) -> list[dict[str, Any]]:
    """The rows the report can use: objects with a numeric step, each value a finite number,
    a bool, a string (elided past MAX_CELL characters) or null; other values become null."""
    clean = []
    for row in rows:
        if not isinstance(row, dict):
            skipped.add(run, "row that is not a JSON object")
            continue
        if not is_finite_number(row.get("step")):
            skipped.add(run, "row without a numeric step")
            continue
        out: dict[str, Any] = {}
        for key, value in row.items():
            reason = None
            if isinstance(value, str) and len(value) > MAX_CELL:
                reason = f"string over {MAX_CELL} characters, elided"
                value = value[: MAX_CELL - 1] + "…"
            elif isinstance(value, dict | list):
                reason, value = "nested value (an object or a list)", None
            elif isinstance(value, int | float) and not isinstance(value, bool):
                if not is_finite_number(value):
                    reason, value = "number that is not finite (or too large)", None
            elif value is not None and not isinstance(value, str | bool):
                reason, value = "value of another type", None
            if reason:
                skipped.add(
                    run, reason, f"metric {json.dumps(metric_name(key), ensure_ascii=False)}"
                )
            out[key] = value
        clean.append(out)
    return clean


def load_runs(experiment_dir: Path) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    """Each run's usable metrics rows (runs without any left out), in run_dirs' order, and
    one line per kind of thing skipped on the way."""
    skipped = _Skipped()
    runs = {}
    for run_dir in run_dirs(Path(experiment_dir)):
        run = f"run {json.dumps(run_dir.name, ensure_ascii=False)}"
        unreadable: list[str] = []
        rows = read_metrics(run_dir, skipped=unreadable)
        for note in unreadable:
            where, _, why = note.partition(": ")
            skipped.add(run, why, where)
        rows = _clean_rows(run, rows, skipped)
        if rows:
            runs[run_dir.name] = rows
    return runs, skipped.lines()


def run_dirs(experiment_dir: Path) -> list[Path]:
    """Run folders, in the spec's order when `expc run` recorded it, then by name."""
    found = sorted(p for p in Path(experiment_dir).iterdir() if (p / "metrics.jsonl").exists())
    order = _spec_info(Path(experiment_dir)).get("runs", [])
    order = [name for name in order if isinstance(name, str)] if isinstance(order, list) else []
    rank = {name: index for index, name in enumerate(order)}
    return sorted(found, key=lambda p: (rank.get(p.name, len(rank)), p.name))


def _spec_info(experiment_dir: Path) -> dict[str, Any]:
    """spec.json (what `expc run` recorded), or {} where there is none or it is not an object."""
    try:
        info = json.loads((experiment_dir / "spec.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    return info if isinstance(info, dict) else {}


def profile_label(info: dict[str, Any]) -> str:
    """How an experiment folder's runs were configured, from its spec.json: the profile
    (`default` for none) and the `--set` overrides on top."""
    label = f"`{info['profile']}`" if info.get("profile") else "default"
    sets = info.get("sets") or []
    if sets:
        label += " with " + ", ".join(f"`--set {s}`" for s in sets)
    return label


def plot_text(text: str) -> str:
    """Text for matplotlib: one short line, `$` literal (not mathtext)."""
    return _plain(text, MAX_NAME).replace("$", r"\$")


def _draw(ax: Any, members: list[list[dict[str, Any]]], key: str, label: str) -> None:
    """One run as a line; several seeds of one run as their mean, with a band of ± one
    standard deviation, at the steps every seed logged."""
    curves = [
        {r["step"]: float(r[key]) for r in rows if isinstance(r.get(key), int | float)}
        for rows in members
    ]
    curves = [c for c in curves if c]
    if not curves:
        return
    if len(curves) == 1:
        steps = sorted(curves[0])
        ax.plot(steps, [curves[0][t] for t in steps], marker="o", markersize=3, label=label)
        return
    steps = sorted(set.intersection(*(set(c) for c in curves)))
    if not steps:
        return
    means = [statistics.fmean(c[t] for c in curves) for t in steps]
    spreads = [statistics.stdev(c[t] for c in curves) for t in steps]
    (line,) = ax.plot(
        steps, means, marker="o", markersize=3, label=f"{label} ({len(curves)} seeds)"
    )
    ax.fill_between(
        steps,
        [m - d for m, d in zip(means, spreads, strict=True)],
        [m + d for m, d in zip(means, spreads, strict=True)],
        color=line.get_color(),
        alpha=0.2,
        linewidth=0,
    )


def draw_estimates(ax: Any, xs: list[float], estimates: list[Any], **style: Any) -> None:
    """Means over seeds (`intervals.Estimate`s) with their 95% interval as error bars; a
    single seed's value has none."""
    ax.errorbar(
        xs,
        [e.mean for e in estimates],
        yerr=[0.0 if math.isnan(e.half_width) else e.half_width for e in estimates],
        marker="o",
        markersize=3,
        capsize=3,
        **style,
    )


def save_figure(fig: Any, ax: Any, path: Path, title: str) -> Path:
    """Title, grid and (when anything was drawn) a legend; write the PNG, close the figure."""
    try:
        ax.set_title(plot_text(title))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)
    return path


def plot_curves(
    experiment_dir: Path,
    runs: dict[str, list[dict[str, Any]]],
    skipped: _Skipped | None = None,
    bands: dict[str, list[str]] | None = None,
) -> list[Path]:
    """One PNG per metric, every run a line against training step (with `bands`, groups of
    runs that differ only in their seed: the mean with a band of ± one standard deviation).
    The rows are those of `load_runs`: each with a numeric step. PNG names come from
    `file_stem`; a plot that would land outside the experiment folder (a symlink) or cannot
    be drawn is skipped."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    skipped = skipped if skipped is not None else _Skipped()
    keys = sorted({k for rows in runs.values() for row in rows for k in row} - _NOT_PLOTTED)
    # A curve needs two points: runs that log one row (a measurement, not a training
    # run) have their numbers in the table only.
    keys = [k for k in keys if any(sum(k in row for row in rows) > 1 for rows in runs.values())]
    if len(keys) > MAX_PLOTS:
        skipped.add(
            "plots", f"{len(keys) - MAX_PLOTS} metrics past the first {MAX_PLOTS}, not plotted"
        )
        keys = keys[:MAX_PLOTS]
    written: list[Path] = []
    taken: set[str] = set()
    for key in keys:
        path = experiment_dir / f"{file_stem(key, taken)}.png"
        name = f"metric {json.dumps(metric_name(key), ensure_ascii=False)}"
        if not _inside(experiment_dir, path):
            skipped.add("plots", "plot file outside the experiment folder, not written", name)
            continue
        fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings(
                    "ignore", message="Glyph .* missing from", category=UserWarning
                )
                for label, members in (bands or {run: [run] for run in runs}).items():
                    _draw(ax, [runs[m] for m in members if m in runs], key, plot_text(label))
                ax.set_xlabel("step")
                ax.set_ylabel(plot_text(metric_name(key)))
                ax.set_title(plot_text(f"{experiment_dir.name}: {metric_name(key)}"))
                ax.grid(alpha=0.3)
                if ax.get_legend_handles_labels()[0]:  # no curve (values all null): no legend
                    ax.legend()
                fig.tight_layout()
                fig.savefig(path)
        except (ValueError, OverflowError) as error:  # e.g. values matplotlib cannot scale
            skipped.add("plots", f"could not be drawn ({type(error).__name__})", name)
            path.unlink(missing_ok=True)
            continue
        finally:
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
        except (OSError, ValueError, RecursionError):
            continue
        if not isinstance(config, dict):
            continue
        groups.setdefault(_config_but_seed(config), []).append(name)
    labelled = {}
    for members in groups.values():
        parts = [p for p in members[0].split("-") if not p.startswith("seed_")]
        labelled["-".join(parts) or "main"] = members
    return labelled


def _config_but_seed(config: dict[str, Any]) -> str:
    """A run's config without what its seed decides: the seed, the name, and the runs of
    its seed it reads (a seeded run reads the upstream runs of its seed: their folders and
    checkpoints differ by seed, the runs they stand for do not)."""
    rest = {k: v for k, v in config.items() if k not in ("name", "seed")}
    if isinstance(rest.get("upstream"), list):
        rest["upstream"] = [
            {k: v for k, v in record.items() if k != "checkpoint_sha256"}
            if isinstance(record, dict)
            else record
            for record in rest["upstream"]
        ]
    text = json.dumps(rest, sort_keys=True)
    seed = config.get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool):
        text = re.sub(rf"(?<![A-Za-z0-9_])seed_{seed}(?![0-9])", "seed_*", text)
    return text


def _seed_table(experiment_dir: Path, finals: dict[str, dict], columns: list[str]) -> list[str]:
    """Mean ± sample standard deviation over seeds and the 95% interval of the mean, when
    some runs differ only by seed; then the paired differences of groups trained on the
    same seeds (see `_paired_lines`)."""
    groups = _seed_groups(experiment_dir, list(finals))
    if not any(len(members) > 1 for members in groups.values()):
        return []
    columns = [c for c in columns if c not in ("step", "elapsed_s")]
    lines = ["Mean ± standard deviation over seeds [95% confidence interval of the mean]:", ""]
    lines.append(
        "| runs | seeds | " + " | ".join(markdown_cell(metric_name(c)) for c in columns) + " |"
    )
    lines.append("|---|---|" + "---|" * len(columns))
    for label, members in groups.items():
        cells = []
        for column in columns:
            values = [finals[m][column] for m in members if _is_value(finals[m].get(column))]
            found = estimate([float(v) for v in values])
            if found.n == 0:
                cells.append("n/a")
            elif found.n == 1:
                cells.append(_format(values[0]))
            elif not math.isfinite(found.std):
                cells.append("n/a")
            else:
                cells.append(
                    f"{_fixed(found.mean)} ± {_fixed(found.std)} "
                    f"[{_fixed(found.low)}, {_fixed(found.high)}]"
                )
        lines.append(
            f"| {markdown_cell(label)} | {len(members)} | "
            + " | ".join(map(markdown_cell, cells))
            + " |"
        )
    return [*lines, "", *_paired_lines(experiment_dir, finals, columns, groups)]


def _is_value(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _seeds_of(experiment_dir: Path, members: list[str]) -> dict[str, int]:
    """run -> its seed (config.json), for runs whose seed can be read."""
    found = {}
    for name in members:
        try:
            seed = json.loads((experiment_dir / name / "config.json").read_text()).get("seed")
        except (OSError, ValueError, RecursionError, AttributeError):
            continue
        if isinstance(seed, int) and not isinstance(seed, bool):
            found[name] = seed
    return found


def _paired_lines(
    experiment_dir: Path,
    finals: dict[str, dict],
    columns: list[str],
    groups: dict[str, list[str]],
) -> list[str]:
    """For two groups whose names differ in one part (two variants at one sweep point, or
    two points of one axis), each metric's difference seed by seed, with its interval and a
    verdict. Only groups with at least two seeds in common are compared."""
    seeded = {label: _seeds_of(experiment_dir, members) for label, members in groups.items()}
    labels = [label for label in groups if len(seeded[label]) > 1]
    # Each factor's first value (the first variant, a sweep's first point) is the baseline
    # the others are compared with: n - 1 comparisons per factor, not n (n - 1) / 2.
    baseline: dict[int, str] = {}
    for label in labels:
        for position, part in enumerate(label.split("-")):
            baseline.setdefault(position, part)
    lines: list[str] = []
    for index, first in enumerate(labels):
        for second in labels[index + 1 :]:
            a, b = first.split("-"), second.split("-")
            if len(a) != len(b) or sum(x != y for x, y in zip(a, b, strict=True)) != 1:
                continue
            differs = next(i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y)
            if a[differs] != baseline[differs]:
                continue
            for column in columns:
                values = [
                    {
                        seed: float(finals[run][column])
                        for run, seed in seeded[label].items()
                        if _is_value(finals[run].get(column))
                    }
                    for label in (first, second)
                ]
                difference = paired(values[0], values[1])
                # A metric the two runs share exactly on every seed (a step count, a
                # budget) is not a result.
                if difference.n > 1 and (difference.mean != 0 or difference.std != 0):
                    said = verdict(first, second, metric_name(column), difference)
                    lines.append(f"- {markdown_cell(said, 300)}")
            if len(lines) >= MAX_PAIRS:
                break
        if len(lines) >= MAX_PAIRS:
            lines = lines[:MAX_PAIRS] + ["- and more pairs, not listed"]
            break
    if not lines:
        return []
    return [
        "Paired differences over the seeds both runs have (second minus first, 95% interval):",
        "",
        *lines,
        "",
    ]


def write_report(experiment_dir: Path) -> Path:
    """Write `report.md` (final metrics of every run side by side, plus curves).

    Rows and values that metrics.jsonl files hold but the report cannot use are skipped:
    report.md lists them in a short note, and one `ReportWarning` names them too.
    """
    experiment_dir = Path(experiment_dir)
    runs, notes = load_runs(experiment_dir)
    skipped = _Skipped()
    finals = {name: rows[-1] for name, rows in runs.items()}
    present = {k for row in finals.values() for k in row}
    columns = [k for k in _TABLE_ORDER if k in present]
    columns += sorted(present - set(columns) - {"tokens", "lr"})
    if len(columns) > MAX_COLUMNS:
        skipped.add(
            "table", f"{len(columns) - MAX_COLUMNS} metrics past the first {MAX_COLUMNS}, not shown"
        )
        columns = columns[:MAX_COLUMNS]
    lines = [f"# {_plain(experiment_dir.name)}", ""]
    info = _spec_info(experiment_dir)
    if info:
        source, sha = info.get("source"), info.get("sha256")
        if isinstance(source, str) and isinstance(sha, str):
            lines += [f"Spec: `{_plain(source)}` (sha256 `{_plain(sha[:12])}`)", ""]
        lines += [f"Profile: {_plain(profile_label(info), 1000)}", ""]
    if finals:
        lines += ["Final evaluation of each run:", ""]
        lines.append("| run | " + " | ".join(markdown_cell(metric_name(c)) for c in columns) + " |")
        lines.append("|---|" + "---|" * len(columns))
        for name, row in finals.items():
            cells = [markdown_cell(_format(row.get(c))) for c in columns]
            lines.append(f"| {markdown_cell(name)} | " + " | ".join(cells) + " |")
    else:
        lines.append("No run has a metrics row with a step yet.")
    lines.append("")
    lines += stability_lines(runs, markdown_cell)
    note_at = len(lines)
    lines += _seed_table(experiment_dir, finals, columns)
    groups = _seed_groups(experiment_dir, list(runs))
    seeded = groups if any(len(members) > 1 for members in groups.values()) else None
    for path in plot_curves(experiment_dir, runs, skipped, seeded):
        lines += [f"![{path.stem}]({path.name})", ""]
    for name in finals:
        if (experiment_dir / name / "attention_maps.png").exists():
            lines += [
                f"Attention maps of `{_plain(name)}`:",
                "",
                f"![{_plain(name)}]({_plain(name)}/attention_maps.png)",
                "",
            ]
    if isinstance(info.get("report"), str) and info["report"]:
        lines += _backend_analysis(info["report"], experiment_dir)
    notes += skipped.lines()
    if notes:
        shown = [f"- {markdown_cell(note, 300)}" for note in notes[:MAX_NOTES]]
        if len(notes) > MAX_NOTES:
            shown.append(f"- and {len(notes) - MAX_NOTES} more")
        lines[note_at:note_at] = ["Skipped (metrics the report cannot use):", "", *shown, ""]
        message = "\n".join(_plain(note, 300) for note in notes[:MAX_NOTES])
        more = f"\n... and {len(notes) - MAX_NOTES} more" if len(notes) > MAX_NOTES else ""
        warnings.warn(
            ReportWarning(f"report of {experiment_dir} skipped:\n{message}{more}"), stacklevel=2
        )
    report = experiment_dir / "report.md"
    if not _inside(experiment_dir, report):  # a symlink out of the folder: replace it
        report.unlink()
    report.write_text("\n".join(lines), encoding="utf-8")
    return report


def _backend_analysis(target: str, experiment_dir: Path) -> list[str]:
    """The backend's own report lines: `module:function`, called with the experiment folder."""
    module_name, _, function = target.partition(":")
    if not module_name.startswith("expc.runtime."):  # spec.json is data, not a code path
        raise ValueError(f"report analysis {target!r} is not part of expc.runtime")
    analyse = getattr(importlib.import_module(module_name), function)
    return list(analyse(experiment_dir))
