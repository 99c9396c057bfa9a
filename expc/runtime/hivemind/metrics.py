"""The Artificial Hivemind paper's similarity measures, as its analysis code defines them.

Source: liweijiang/artificial-hiveminds, `src/model_calibration_analysis/`:
- intra-model: `get_pairwise_similarity` (upper triangle, k=1, of one prompt's cosine
  matrix) averaged, one number per (model, prompt); histogram over prompts with 10 bins on
  [0, 1] as percentages (`main_heatmap_transposed`);
- inter-model: `main_heatmap_across_models` pools the cosine similarities of all cross
  pairs of all prompts and takes one mean (prompts with more pairs weigh more); for a model
  with itself that code takes the full n x n matrix, self-pairs (= 1) included;
- top-N source models: `get_unique_model_counts_per_prompt`, cosine distances over every
  model's responses to one prompt, self excluded, N nearest neighbours, distinct source
  models counted, averaged over responses and then over prompts.
Distinct-n (Li et al., 2016) is the lexical diversity measure shown beside them.
Everything here is plain numpy on given embeddings: no model, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

Embeddings = Mapping[str, Mapping[str, np.ndarray]]  # model -> prompt id -> (n, dim)


def cosine_matrix(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """Cosine similarities between the rows of a and of b (default: a with itself)."""
    a = np.asarray(a, dtype=np.float64)
    b = a if b is None else np.asarray(b, dtype=np.float64)
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return a @ b.T


def pairwise_similarities(embeddings: np.ndarray) -> np.ndarray:
    """The n(n-1)/2 cosine similarities of distinct pairs (upper triangle, k=1)."""
    sims = cosine_matrix(embeddings)
    return sims[np.triu_indices_from(sims, k=1)]


def intra_similarity(embeddings: np.ndarray) -> float:
    """Mean pairwise cosine similarity of one model's samples for one prompt (needs n >= 2)."""
    if len(embeddings) < 2:
        raise ValueError("intra-model similarity needs at least 2 samples")
    return float(pairwise_similarities(embeddings).mean())


def intra_similarities(by_prompt: Mapping[str, np.ndarray]) -> dict[str, float]:
    """prompt id -> intra-model similarity, for one model."""
    return {prompt: intra_similarity(e) for prompt, e in by_prompt.items() if len(e) >= 2}


def similarity_histogram(values: Sequence[float], bins: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Percent of values per bucket of [0, 1] (`np.histogram(range=(0, 1))`), and the edges.

    As in numpy, the last bucket is closed ([0.9, 1.0]) and values outside [0, 1]
    (negative cosines) are not counted, so the percentages can sum to less than 100.
    """
    counts, edges = np.histogram(np.asarray(values, dtype=np.float64), bins=bins, range=(0, 1))
    return counts / max(1, len(values)) * 100.0, edges


def share_above(values: Sequence[float], thresholds: Sequence[float]) -> dict[float, float]:
    """Fraction of values strictly above each threshold (e.g. the paper's "79% > 0.8")."""
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        return {t: float("nan") for t in thresholds}
    return {t: float((array > t).mean()) for t in thresholds}


def cross_similarity(
    a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray], include_self_pairs: bool = True
) -> float:
    """Mean cosine similarity over all cross pairs of all prompts both models answered.

    Pairs are pooled before averaging, as the paper's code does. When a and b are the
    same model the paper's code includes the n self-pairs; `include_self_pairs=False`
    drops them (then the value is the pooled intra-model similarity).
    """
    total, count = 0.0, 0
    for prompt in sorted(set(a) & set(b)):
        sims = cosine_matrix(a[prompt], b[prompt])
        if a is b and not include_self_pairs:
            sims = sims[~np.eye(len(sims), dtype=bool)]
        total += float(sims.sum())
        count += sims.size
    if count == 0:
        raise ValueError("the two models share no prompt with responses")
    return total / count


def inter_model_matrix(
    embeddings: Embeddings, models: Sequence[str] | None = None, include_self_pairs: bool = True
) -> tuple[list[str], np.ndarray]:
    """The symmetric model x model matrix of `cross_similarity` (the paper's Fig. 4 heatmap)."""
    names = list(models) if models is not None else sorted(embeddings)
    matrix = np.zeros((len(names), len(names)))
    for i, first in enumerate(names):
        for j in range(i + 1):
            value = cross_similarity(
                embeddings[first], embeddings[names[j]], include_self_pairs=include_self_pairs
            )
            matrix[i, j] = matrix[j, i] = value
    return names, matrix


def top_n_source_counts(
    embeddings: Embeddings, max_n: int = 50, prompts: Sequence[str] | None = None
) -> dict[int, list[float]]:
    """N -> per prompt, the mean number of distinct models among a response's N nearest.

    For each prompt every model's responses are pooled; a response's neighbours are the
    other responses by cosine distance (itself excluded). N runs from 1 to
    min(max_n, pool size - 1). Ties are broken by position (a stable sort), where the
    paper's `argpartition` breaks them arbitrarily.
    """
    shared = prompts if prompts is not None else sorted(set.union(*map(set, embeddings.values())))
    result: dict[int, list[float]] = {}
    for prompt in shared:
        parts = [(m, e[prompt]) for m, e in sorted(embeddings.items()) if prompt in e]
        pool = np.concatenate([e for _, e in parts])
        labels = np.concatenate([np.full(len(e), k) for k, (_, e) in enumerate(parts)])
        distances = 1.0 - cosine_matrix(pool)
        np.fill_diagonal(distances, np.inf)
        order = np.argsort(distances, axis=1, kind="stable")  # self (inf) sorts last
        neighbour_labels = labels[order]
        for n in range(1, min(max_n, len(pool) - 1) + 1):
            nearest = neighbour_labels[:, :n]
            distinct = [len(np.unique(row)) for row in nearest]
            result.setdefault(n, []).append(float(np.mean(distinct)))
    return result


_TOKEN = re.compile(r"\w+|[^\w\s]")


def tokens(text: str) -> list[str]:
    """Lower-cased words and single punctuation marks."""
    return _TOKEN.findall(text.lower())


def distinct_n(texts: Sequence[str], n: int = 2) -> float:
    """Distinct n-grams / all n-grams over a set of texts (1.0: no n-gram repeats).

    n-grams do not cross text boundaries. NaN when the texts hold no n-gram.
    """
    grams: list[tuple[str, ...]] = []
    for text in texts:
        words = tokens(text)
        grams += [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else float("nan")
