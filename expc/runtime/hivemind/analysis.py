"""From responses and their embeddings to every number the report shows."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from expc.runtime.hivemind import metrics
from expc.runtime.hivemind.prompts import Prompt
from expc.runtime.hivemind.responses import Response, group

DEFAULT_THRESHOLDS = (0.7, 0.8, 0.9)


@dataclass(frozen=True)
class PromptScore:
    """One model on one prompt."""

    model: str
    prompt_id: str
    category: str
    samples: int
    intra: float  # mean pairwise cosine similarity of the samples (NaN with < 2)
    distinct_1: float
    distinct_2: float


@dataclass
class Analysis:
    models: list[str]
    thresholds: list[float]
    scores: list[PromptScore]
    # model -> mean intra over prompts, % per histogram bucket, share above each threshold
    intra_mean: dict[str, float]
    histogram: dict[str, list[float]]
    histogram_edges: list[float]
    share_above: dict[str, dict[str, float]]
    # the paper's inter-model heatmap (self-pairs on the diagonal, as its code does) and
    # the same with self-pairs dropped (diagonal = pooled intra-model similarity)
    inter: list[list[float]]
    inter_without_self: list[list[float]]
    # N -> mean over prompts of distinct source models among the N nearest responses
    top_n_sources: dict[int, float]
    # model -> category -> {"intra", "share_above_0.8", "distinct_2", "prompts"}
    by_category: dict[str, dict[str, dict[str, float]]]
    embedder: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["top_n_sources"] = {str(k): v for k, v in self.top_n_sources.items()}
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Analysis:
        """The inverse of `to_json` (metrics.json back into an Analysis; JSON null = NaN)."""

        def number(value: Any) -> float:
            return float("nan") if value is None else float(value)

        values = dict(data)
        values["scores"] = [
            PromptScore(**{k: number(v) if k in _FLOATS else v for k, v in s.items()})
            for s in data["scores"]
        ]
        values["top_n_sources"] = {int(k): v for k, v in data["top_n_sources"].items()}
        return cls(**values)


_FLOATS = ("intra", "distinct_1", "distinct_2")


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


def analyze(
    prompts: Sequence[Prompt],
    responses: Sequence[Response],
    embed: Callable[[Sequence[str]], np.ndarray],
    *,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    top_n: int = 50,
    models: Sequence[str] | None = None,
) -> Analysis:
    """All measures over the responses; `embed` maps texts to unit-length rows."""
    table = group(responses)
    names = list(models) if models is not None else list(dict.fromkeys(r.model for r in responses))
    category = {p.id: p.category for p in prompts}
    order = [p.id for p in prompts]
    texts = [r.text for m in names for p in order for r in table[m].get(p, [])]
    vectors = embed(texts)
    embeddings: dict[str, dict[str, np.ndarray]] = {}
    row = 0
    for model in names:
        embeddings[model] = {}
        for prompt in order:
            count = len(table[model].get(prompt, []))
            if count:
                embeddings[model][prompt] = vectors[row : row + count]
                row += count

    scores = []
    for model in names:
        for prompt in order:
            answers = [r.text for r in table[model].get(prompt, [])]
            if not answers:
                continue
            intra = (
                metrics.intra_similarity(embeddings[model][prompt])
                if len(answers) >= 2
                else float("nan")
            )
            scores.append(
                PromptScore(
                    model,
                    prompt,
                    category[prompt],
                    len(answers),
                    intra,
                    metrics.distinct_n(answers, 1),
                    metrics.distinct_n(answers, 2),
                )
            )

    intra_mean, histogram, share = {}, {}, {}
    edges = np.linspace(0, 1, 11)
    for model in names:
        values = [s.intra for s in scores if s.model == model and not math.isnan(s.intra)]
        intra_mean[model] = _nanmean(values)
        percent, edges = metrics.similarity_histogram(values)
        histogram[model] = percent.tolist()
        share[model] = {f"{t:g}": v for t, v in metrics.share_above(values, thresholds).items()}

    _, inter = metrics.inter_model_matrix(embeddings, names)
    _, inter_no_self = metrics.inter_model_matrix(embeddings, names, include_self_pairs=False)
    sources = metrics.top_n_source_counts(embeddings, top_n, order) if len(names) > 1 else {}

    by_category: dict[str, dict[str, dict[str, float]]] = {}
    for model in names:
        by_category[model] = {}
        for cat in dict.fromkeys(p.category for p in prompts):
            rows = [s for s in scores if s.model == model and s.category == cat]
            if not rows:
                continue
            values = [s.intra for s in rows if not math.isnan(s.intra)]
            by_category[model][cat] = {
                "prompts": len(rows),
                "intra": _nanmean(values),
                "share_above_0.8": metrics.share_above(values, [0.8])[0.8],
                "distinct_2": _nanmean([s.distinct_2 for s in rows]),
            }

    return Analysis(
        models=names,
        thresholds=list(thresholds),
        scores=scores,
        intra_mean=intra_mean,
        histogram=histogram,
        histogram_edges=[float(e) for e in edges],
        share_above=share,
        inter=inter.tolist(),
        inter_without_self=inter_no_self.tolist(),
        top_n_sources={n: float(np.mean(v)) for n, v in sources.items()},
        by_category=by_category,
    )
