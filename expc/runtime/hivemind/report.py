"""The report: metrics.json, the paper's two heatmaps as PNGs, distributions, report.md."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np

from expc.runtime.hivemind.analysis import Analysis
from expc.runtime.intervals import by_seed, estimate, paired, split_seed, verdict


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def plot_inter_model(analysis: Analysis, path: Path) -> None:
    """Lower-triangle model x model heatmap of mean cross-pair similarity (paper Fig. 4)."""
    plt = _pyplot()
    names, matrix = analysis.models, np.array(analysis.inter)
    size = max(5.5, 1.1 * len(names) + 3)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    masked = np.ma.array(matrix, mask=np.triu(np.ones_like(matrix, dtype=bool), k=1))
    image = ax.imshow(masked, cmap="YlOrRd", vmin=min(0.5, float(matrix.min())), vmax=1.0)
    for i in range(len(names)):
        for j in range(i + 1):
            ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=9)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_title("Inter-model similarity\n(mean cosine over all cross pairs)", fontsize=10)
    fig.colorbar(image, ax=ax, shrink=0.8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_intra_histogram(analysis: Analysis, path: Path) -> None:
    """% of prompts per intra-model similarity bucket, models as columns (paper Fig. 3)."""
    plt = _pyplot()
    edges = analysis.histogram_edges
    columns = ["Average", *analysis.models]
    data = np.array([analysis.histogram[m] for m in analysis.models]).T  # (buckets, models)
    data = np.hstack([data.mean(axis=1, keepdims=True), data])[::-1]  # high buckets on top
    labels = [f"{edges[i]:.1f}-{edges[i + 1]:.1f}" for i in range(len(edges) - 1)][::-1]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(columns) + 2), 5))
    ax.imshow(data, cmap="YlOrRd", vmin=0, vmax=max(1.0, float(data.max())), aspect="auto")
    for i in range(data.shape[0]):
        for j in range(data.shape[1]):
            dark = data[i, j] > 0.6 * data.max()
            color = "white" if dark else "black"
            ax.text(j, i, f"{data[i, j]:.1f}", ha="center", va="center", fontsize=9, color=color)
    ax.set_xticks(range(len(columns)), columns, rotation=45, ha="left")
    ax.xaxis.tick_top()
    ax.set_yticks(range(len(labels)), labels)
    ax.set_ylabel("intra-model similarity")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_distributions(analysis: Analysis, path: Path) -> None:
    """Per model: distribution over prompts of intra-model similarity and of distinct-2."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    bins = np.linspace(0, 1, 101)  # fine: models whose values crowd together stay apart
    for model in analysis.models:
        rows = [s for s in analysis.scores if s.model == model]
        intra = [s.intra for s in rows if not math.isnan(s.intra)]
        diverse = [s.distinct_2 for s in rows if not math.isnan(s.distinct_2)]
        left.hist(intra, bins=bins, histtype="stepfilled", alpha=0.45, label=model)
        right.hist(diverse, bins=bins, histtype="stepfilled", alpha=0.45, label=model)
    left.set_xlabel("intra-model similarity per prompt (mean pairwise cosine)")
    right.set_xlabel("distinct-2 per prompt (lexical diversity)")
    for ax in (left, right):
        ax.set_ylabel("prompts")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_top_n(analysis: Analysis, path: Path) -> None:
    """Mean number of distinct source models among a response's N nearest (paper Fig. 8)."""
    plt = _pyplot()
    ns = sorted(analysis.top_n_sources)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(ns, [analysis.top_n_sources[n] for n in ns], marker="o", markersize=3)
    ax.axhline(len(analysis.models), color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("N nearest responses")
    ax.set_ylabel("distinct source models")
    ax.set_ylim(0, len(analysis.models) + 0.5)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _f(value: float, digits: int = 3) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _interval(values: list[float]) -> str:
    found = estimate([v for v in values if not math.isnan(v)])
    return f"[{found.low:.3f}, {found.high:.3f}]" if found.n > 1 else "-"


def markdown(
    analysis: Analysis,
    title: str,
    notes: list[str] | None = None,
    level: int = 1,
    images: str = "",
) -> str:
    """report.md: intra per model, the inter-model matrix, per-category table, top-N.

    `level` is the title's heading level; `images` prefixes the PNG paths (a run folder
    when the text goes into the experiment's report).
    """
    thresholds = list(next(iter(analysis.share_above.values()), {}))
    h1, h2 = "#" * level, "#" * (level + 1)
    lines = [f"{h1} {title}", ""]
    lines += notes or []
    lines += ["", f"{h2} Intra-model similarity (mean pairwise cosine per prompt)", ""]
    # Prompts are the replicates of this measurement: the interval is over them.
    header = [
        "model",
        "prompts",
        "mean",
        "95% interval over prompts",
        *(f"> {t}" for t in thresholds),
        "distinct-2",
    ]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for model in analysis.models:
        rows = [s for s in analysis.scores if s.model == model]
        distinct = [s.distinct_2 for s in rows if not math.isnan(s.distinct_2)]
        cells = [
            model,
            str(len(rows)),
            _f(analysis.intra_mean[model]),
            _interval([s.intra for s in rows]),
            *(f"{100 * analysis.share_above[model][t]:.1f}%" for t in thresholds),
            _f(float(np.mean(distinct)) if distinct else float("nan")),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"![intra-model histogram]({images}intra_histogram.png)", ""]
    lines += [f"![distributions]({images}distributions.png)", ""]
    lines += [f"{h2} Inter-model similarity (mean over all cross pairs of all prompts)", ""]
    lines += [
        "Off the diagonal: every response of one model against every response of the other "
        "to the same prompt. Diagonal, as in the paper's code: a model with itself, "
        "self-pairs included (in brackets: without them).",
        "",
    ]
    lines += ["| | " + " | ".join(analysis.models) + " |", "|---|" + "---|" * len(analysis.models)]
    for i, model in enumerate(analysis.models):
        cells = []
        for j in range(len(analysis.models)):
            cell = _f(analysis.inter[i][j])
            if i == j:
                cell += f" ({_f(analysis.inter_without_self[i][j])})"
            cells.append(cell)
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    lines += ["", f"![inter-model heatmap]({images}inter_model.png)", ""]
    lines += [f"{h2} By category", ""]
    lines += [
        "| model | category | prompts | intra | > 0.8 | distinct-2 |",
        "|---|---|---|---|---|---|",
    ]
    for model in analysis.models:
        for cat, row in analysis.by_category[model].items():
            share = row["share_above_0.8"]
            lines.append(
                f"| {model} | {cat} | {int(row['prompts'])} | {_f(row['intra'])} | "
                f"{'-' if math.isnan(share) else f'{100 * share:.1f}%'} | {_f(row['distinct_2'])} |"
            )
    if analysis.top_n_sources:
        lines += ["", f"{h2} Top-N source models", ""]
        lines += [
            "For each response, the N most similar responses to the same prompt from all "
            "models: how many distinct models wrote them (mean over responses, then prompts).",
            "",
            "| N | " + " | ".join(str(n) for n in _some(analysis.top_n_sources)) + " |",
            "|---|" + "---|" * len(_some(analysis.top_n_sources)),
            "| models | "
            + " | ".join(_f(analysis.top_n_sources[n], 2) for n in _some(analysis.top_n_sources))
            + " |",
            "",
            f"![top-N source models]({images}top_n_sources.png)",
        ]
    return "\n".join(lines) + "\n"


def _some(values: dict[int, float]) -> list[int]:
    """N = 1, 5, 10, ... and the largest, to keep the table narrow."""
    ns = sorted(values)
    return [n for n in ns if n == 1 or n % 5 == 0 or n == ns[-1]]


def write_report(
    analysis: Analysis, out_dir: Path, title: str, notes: list[str] | None = None
) -> Path:
    """metrics.json, the PNGs and report.md in out_dir; returns report.md's path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(analysis.to_json(), indent=1) + "\n")
    plot_inter_model(analysis, out_dir / "inter_model.png")
    plot_intra_histogram(analysis, out_dir / "intra_histogram.png")
    plot_distributions(analysis, out_dir / "distributions.png")
    if analysis.top_n_sources:
        plot_top_n(analysis, out_dir / "top_n_sources.png")
    path = out_dir / "report.md"
    path.write_text(markdown(analysis, title, notes))
    return path


def analyse(experiment_dir: Path) -> list[str]:
    """The backend's part of the experiment's report.md: each run's analysis, from its
    metrics.json (written by `write_report` into the run folder)."""
    from expc.runtime.report import ReportWarning, run_dirs

    lines: list[str] = []
    analyses: dict[str, Analysis] = {}
    for run_dir in run_dirs(Path(experiment_dir)):
        saved = run_dir / "metrics.json"
        if not saved.exists():
            continue
        try:  # a metrics.json or config.json this analysis cannot use: the run is left out
            analysis = Analysis.from_json(json.loads(saved.read_text()))
            analyses[run_dir.name] = analysis
            config = json.loads((run_dir / "config.json").read_text())
            objective = config.get("objective", {})
            setting = ", ".join(f"{k} = {v}" for k, v in objective.items())
            text = markdown(
                analysis,
                f"Run `{run_dir.name}`",
                notes=[f"Decoding: {setting}." if setting else ""],
                level=2,
                images=f"{run_dir.name}/",
            )
        except (OSError, ValueError, RecursionError, KeyError, TypeError, AttributeError) as error:
            warnings.warn(
                ReportWarning(f"{run_dir.name}: {saved.name} not used: {error!r}"[:500]),
                stacklevel=2,
            )
            continue
        lines += text.splitlines()
    return over_seeds(analyses) + lines


def over_seeds(analyses: dict[str, Analysis]) -> list[str]:
    """Per run over its seeds (each seed sampled models trained with that seed): each
    model's intra-model similarity, each pair's inter-model similarity, and the paired
    differences that carry the paper's claims, with 95% intervals over the seeds."""
    lines: list[str] = []
    for label, seeds in by_seed(analyses).items():
        intra: dict[str, dict[int, float]] = {}
        share: dict[str, dict[int, float]] = {}
        inter: dict[tuple[str, str], dict[int, float]] = {}
        for seed, analysis in seeds.items():
            models = [split_seed(m)[0] for m in analysis.models]
            for i, model in enumerate(models):
                intra.setdefault(model, {})[seed] = analysis.intra_mean[analysis.models[i]]
                high = analysis.share_above[analysis.models[i]]
                share.setdefault(model, {})[seed] = high.get("0.8", math.nan)
                for j in range(i + 1, len(models)):
                    inter.setdefault((model, models[j]), {})[seed] = analysis.inter[i][j]
        lines += [f"## Run `{label}` over {len(seeds)} seeds", ""]
        lines += [
            "Each seed samples the models trained with that seed: mean ± standard "
            "deviation over seeds [95% interval of the mean].",
            "",
            "| model | seeds | intra | > 0.8 |",
            "|---|---|---|---|",
        ]
        for model in intra:
            lines.append(
                f"| {model} | {len(intra[model])} | {_over(intra[model])} | {_over(share[model])} |"
            )
        if inter:
            lines += ["", "| models | seeds | inter |", "|---|---|---|"]
            for (a, b), values in inter.items():
                lines.append(f"| {a} × {b} | {len(values)} | {_over(values)} |")
        claims = []
        names = list(intra)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                claims.append(verdict(a, b, "intra", paired(intra[a], intra[b])))
        for (a, b), values in inter.items():
            # The hivemind claim: answers of two models are as alike as one model's own.
            own = {
                s: (intra[a][s] + intra[b][s]) / 2
                for s in values
                if s in intra[a] and s in intra[b]
            }
            claims.append(
                verdict("mean intra", f"{a} × {b} inter", "similarity", paired(own, values))
            )
        if claims:
            lines += ["", "Paired over seeds (second minus first, 95% interval):", ""]
            lines += [f"- {claim}" for claim in claims]
        lines.append("")
    return lines


def _over(values: dict[int, float]) -> str:
    found = estimate(list(values.values()))
    if found.n < 2:
        return _f(found.mean)
    return f"{found.mean:.3f} ± {found.std:.3f} [{found.low:.3f}, {found.high:.3f}]"
