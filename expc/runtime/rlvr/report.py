"""passk.json (what a run measured at the end) and the report's RLVR section: the pass@k table
of the base and RL models, the crossover k, coverage, training budgets, and a log-x plot."""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from expc.runtime.intervals import MIN_SEEDS_FOR_VERDICT, Estimate, by_seed, estimate
from expc.runtime.report import ReportWarning, is_finite_number, run_dirs
from expc.runtime.rlvr.passk import coverage, crossover_k, pass_at_k_curve

PASSK_FILE = "passk.json"


def passk_summary(
    base_correct: Sequence[int],
    rl_correct: Sequence[int],
    samples: int,
    budget: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Both models' pass@k curves (k = 1, 2, 4, ..., samples), coverage and crossover."""
    base, rl = pass_at_k_curve(base_correct, samples), pass_at_k_curve(rl_correct, samples)
    ks = list(base)
    return {
        "samples": samples,
        "problems": len(base_correct),
        "ks": ks,
        "base": {
            "pass_at_k": [base[k] for k in ks],
            "coverage": coverage(base_correct),
            "correct": list(base_correct),
        },
        "rl": {
            "pass_at_k": [rl[k] for k in ks],
            "coverage": coverage(rl_correct),
            "correct": list(rl_correct),
        },
        "crossover_k": crossover_k(ks, [rl[k] for k in ks], [base[k] for k in ks]),
        "budget": budget or {},
    }


def write_passk(run_dir: Path, summary: dict[str, Any]) -> Path:
    path = Path(run_dir) / PASSK_FILE
    path.write_text(json.dumps(summary, indent=2) + "\n")
    return path


def _runs(experiment_dir: Path) -> dict[str, dict[str, Any]]:
    """Each finished run's passk.json, in the spec's run order (one that is not as
    `passk_summary` writes it is left out)."""
    found = {}
    for run_dir in run_dirs(experiment_dir):
        try:
            summary = json.loads((run_dir / PASSK_FILE).read_text())
        except (OSError, ValueError, RecursionError):
            continue  # not finished, or a torn file from a killed run
        if _usable(summary):
            found[run_dir.name] = summary
    return found


def _usable(summary: Any) -> bool:
    """Whether a passk.json has what `analyse` reads: numbers where it formats numbers."""

    def numbers(values: Any) -> bool:
        return isinstance(values, list) and all(is_finite_number(v) for v in values)

    if not isinstance(summary, dict) or not {"problems", "samples"} <= summary.keys():
        return False
    models = [summary.get("base"), summary.get("rl")]
    if not all(isinstance(m, dict) for m in models) or not numbers(summary.get("ks")):
        return False
    crossover = summary.get("crossover_k")
    return (
        all(
            numbers(m.get("pass_at_k"))
            and len(m["pass_at_k"]) == len(summary["ks"])
            and is_finite_number(m.get("coverage"))
            and isinstance(m.get("correct"), list)
            for m in models
        )
        and (crossover is None or is_finite_number(crossover))
        and isinstance(summary.get("budget", {}), dict)
    )


def _subset_note(summary: dict[str, Any]) -> str:
    """How the problems solved at any k by RL relate to those of the base (the paper's
    Table 4: RL's solved set is nearly a subset of the base's)."""
    base = {i for i, c in enumerate(summary["base"]["correct"]) if c}
    rl = {i for i, c in enumerate(summary["rl"]["correct"]) if c}
    return (
        f"solved by base {len(base)}, by RL {len(rl)}, by both {len(base & rl)}, "
        f"by RL only {len(rl - base)}, by base only {len(base - rl)}"
    )


def plot_passk(experiment_dir: Path, runs: dict[str, dict[str, Any]]) -> Path:
    """pass@k against k on a log2 axis: each run's base (dashed) and RL (solid) curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for index, (name, summary) in enumerate(runs.items()):
        colour = f"C{index}"
        ks = summary["ks"]
        ax.plot(ks, summary["base"]["pass_at_k"], "--o", color=colour, ms=3, label=f"{name} base")
        ax.plot(ks, summary["rl"]["pass_at_k"], "-o", color=colour, ms=3, label=f"{name} RL")
        if summary.get("crossover_k"):
            ax.axvline(summary["crossover_k"], color=colour, alpha=0.3, lw=1)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k (samples per problem)")
    ax.set_ylabel("pass@k")
    ax.set_title(f"{Path(experiment_dir).name}: pass@k on held-out problems")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    path = Path(experiment_dir) / "passk.png"
    try:
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


def analyse(experiment_dir: Path) -> list[str]:
    """The report's RLVR section, from each run's passk.json."""
    runs = _runs(experiment_dir)
    if not runs:
        return ["No run has finished its pass@k evaluation yet (no passk.json).", ""]
    lines = ["## pass@k: base (after pretraining) vs RL (after GRPO)", ""]
    for name, summary in runs.items():
        ks, base, rl = summary["ks"], summary["base"], summary["rl"]
        crossover = summary.get("crossover_k")
        lines += [
            f"### {name}",
            "",
            f"{summary['problems']} held-out problems, n = {summary['samples']} samples each.",
            "",
            "| k | base | RL | RL - base |",
            "|---|---|---|---|",
        ]
        for k, b, r in zip(ks, base["pass_at_k"], rl["pass_at_k"], strict=True):
            lines.append(f"| {k} | {b:.4f} | {r:.4f} | {r - b:+.4f} |")
        lines += [
            "",
            "- crossover k (base catches up with RL): "
            + (f"{crossover:.1f}" if crossover else "none within k <= n"),
            f"- coverage (solved at any k): base {base['coverage']:.4f}, RL {rl['coverage']:.4f}",
            f"- problems: {_subset_note(summary)}",
        ]
        budget = summary.get("budget", {})
        if budget:
            lines.append("- budget: " + ", ".join(f"{k} {_fmt(v)}" for k, v in budget.items()))
        lines.append("")
    lines += seed_lines(runs)
    try:
        path = plot_passk(experiment_dir, runs)
    except (ValueError, OverflowError) as error:  # values matplotlib cannot scale
        warnings.warn(ReportWarning(f"pass@k plot not drawn: {error!r}"), stacklevel=2)
        return lines
    return [*lines, f"![pass@k]({path.name})", ""]


def seed_lines(runs: dict[str, dict[str, Any]]) -> list[str]:
    """When runs differ only by their seed: the paper's two claims with 95% intervals over
    seeds (RL's gain at k = 1, the base model's lead at the largest k), and the crossover
    k where each seed has one."""
    lines: list[str] = []
    for label, seeds in by_seed(runs).items():
        summaries = list(seeds.values())
        gain = estimate([s["rl"]["pass_at_k"][0] - s["base"]["pass_at_k"][0] for s in summaries])
        lead = estimate([s["base"]["pass_at_k"][-1] - s["rl"]["pass_at_k"][-1] for s in summaries])
        largest = summaries[0]["ks"][-1]
        crossings = [s["crossover_k"] for s in summaries if is_finite_number(s.get("crossover_k"))]
        found = estimate([float(k) for k in crossings])
        lines += [
            f"### `{label}` over {len(seeds)} seeds (95% intervals)",
            "",
            f"- pass@1, RL - base: {_interval(gain)}",
            f"- pass@{largest}, base - RL: {_interval(lead)}",
            f"- crossover k: in {len(crossings)} of {len(seeds)} seeds"
            + (f", {_interval(found, '.1f')}" if found.n > 1 else ""),
            "",
        ]
    return lines


def _interval(found: Estimate, fmt: str = "+.4f") -> str:
    """`+0.0410 ± 0.0260 (3 seeds), above 0` or `... includes 0`; fewer than 3 seeds get
    the interval without a verdict."""
    spread = fmt.lstrip("+")  # the half-width in the mean's precision, unsigned
    text = f"{found.mean:{fmt}} ± {found.half_width:{spread}} ({found.n} seeds)"
    if found.n < MIN_SEEDS_FOR_VERDICT or fmt != "+.4f":
        return text
    if not found.excludes_zero():
        return text + ", includes 0: within noise"
    return text + (", above 0" if found.mean > 0 else ", below 0")


def _fmt(value: Any) -> str:
    return f"{value:.1f}" if isinstance(value, float) else str(value)
