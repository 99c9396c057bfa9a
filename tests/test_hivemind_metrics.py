"""The paper's similarity measures on hand-made embeddings, against hand-computed answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from expc.runtime.hivemind import metrics

R2 = math.sqrt(2)


def test_pairwise_similarities_are_the_upper_triangle_of_the_cosine_matrix() -> None:
    # cos(e1, e2) = 0, cos(e1, e1+e2) = cos(e2, e1+e2) = 1/sqrt(2); scaling changes nothing.
    embeddings = np.array([[2.0, 0.0], [0.0, 3.0], [5.0, 5.0]])
    assert metrics.pairwise_similarities(embeddings) == pytest.approx([0.0, 1 / R2, 1 / R2])
    assert metrics.intra_similarity(embeddings) == pytest.approx(R2 / 3)


def test_identical_samples_have_similarity_one_and_one_sample_has_none() -> None:
    assert metrics.intra_similarity(np.ones((5, 3))) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least 2"):
        metrics.intra_similarity(np.ones((1, 3)))
    # Prompts with a single sample are left out of the per-prompt table.
    table = metrics.intra_similarities({"a": np.eye(2), "b": np.ones((1, 2))})
    assert table == {"a": pytest.approx(0.0)}


def test_histogram_is_percent_per_tenth_with_the_last_bucket_closed() -> None:
    percent, edges = metrics.similarity_histogram([0.05, 0.15, 0.95, 1.0, 0.85])
    assert edges == pytest.approx(np.linspace(0, 1, 11))
    assert percent == pytest.approx([20, 20, 0, 0, 0, 0, 0, 0, 20, 40])
    # Negative cosines fall outside [0, 1] and are not counted, as with np.histogram.
    percent, _ = metrics.similarity_histogram([-0.2, 0.5])
    assert percent.sum() == pytest.approx(50.0)


def test_share_above_is_strict() -> None:
    shares = metrics.share_above([0.7, 0.8, 0.81, 0.95], [0.7, 0.8, 0.9])
    assert shares == {0.7: 0.75, 0.8: 0.5, 0.9: 0.25}
    assert math.isnan(metrics.share_above([], [0.8])[0.8])


def test_cross_similarity_pools_pairs_over_prompts() -> None:
    a = {"p": np.array([[1.0, 0.0], [0.0, 1.0]]), "q": np.array([[1.0, 0.0]])}
    b = {"p": np.array([[1.0, 0.0]]), "q": np.array([[2.0, 0.0]] * 3), "only_b": np.eye(2)}
    # p: pairs 1 and 0; q: three pairs of 1. Pooled: 4 / 5, not the mean of means 0.75.
    assert metrics.cross_similarity(a, b) == pytest.approx(0.8)
    assert metrics.cross_similarity(b, a) == pytest.approx(0.8)


def test_a_model_with_itself_keeps_self_pairs_like_the_paper_unless_asked() -> None:
    a = {"p": np.array([[1.0, 0.0], [0.0, 1.0]]), "q": np.array([[1.0, 0.0]])}
    # With self-pairs: p's 2x2 matrix (1, 0, 0, 1) and q's single 1 -> 3 / 5.
    assert metrics.cross_similarity(a, a) == pytest.approx(0.6)
    # Without: p's two off-diagonal zeros; q has no pair.
    assert metrics.cross_similarity(a, a, include_self_pairs=False) == pytest.approx(0.0)


def test_inter_model_matrix_is_symmetric_in_the_given_order() -> None:
    e = {
        "x": {"p": np.array([[1.0, 0.0]])},
        "y": {"p": np.array([[0.0, 1.0]])},
        "z": {"p": np.array([[1.0, 1.0]])},
    }
    names, matrix = metrics.inter_model_matrix(e, ["z", "x", "y"])
    assert names == ["z", "x", "y"]
    expected = [[1, 1 / R2, 1 / R2], [1 / R2, 1, 0], [1 / R2, 0, 1]]
    assert matrix == pytest.approx(np.array(expected))
    with pytest.raises(ValueError, match="no prompt"):
        metrics.cross_similarity({"p": np.eye(2)}, {"q": np.eye(2)})


def test_top_n_source_counts_by_hand() -> None:
    # a1, a2 point along x; b1, b2 along y. Each response's nearest is its own model's
    # other response; its second nearest is the other model's closer one.
    e = {
        "a": {"p": np.array([[1.0, 0.0], [0.99, 0.14]])},
        "b": {"p": np.array([[0.0, 1.0], [0.1, 0.99]])},
    }
    assert metrics.top_n_source_counts(e, max_n=50) == {1: [1.0], 2: [2.0], 3: [2.0]}
    # A third model that copies a1 exactly: a1's nearest is now c, c's is a1, a2's is a1.
    e["c"] = {"p": np.array([[1.0, 0.0]])}
    counts = metrics.top_n_source_counts(e, max_n=1)
    # N=1: every response's single nearest neighbour is from one model.
    assert counts == {1: [1.0]}
    counts = metrics.top_n_source_counts(e, max_n=2)
    # N=2 nearest: a1 -> {c, a2}: 2; a2 -> {a1, c}: 2; b1 -> {b2, a2}: 2; b2 -> {b1, a2}: 2;
    # c -> {a1, a2}: 1. Mean 9/5.
    assert counts[2] == [pytest.approx(9 / 5)]


def test_top_n_is_averaged_per_prompt_then_reported_per_prompt() -> None:
    e = {
        "a": {"p": np.array([[1.0, 0.0], [1.0, 0.01]]), "q": np.array([[1.0, 0.0]])},
        "b": {"p": np.array([[0.0, 1.0], [0.01, 1.0]]), "q": np.array([[0.0, 1.0]])},
    }
    counts = metrics.top_n_source_counts(e, max_n=3, prompts=["p", "q"])
    # One value per prompt: p (own model nearest) and q (the only neighbour is the other's).
    assert counts[1] == [1.0, 1.0]
    assert counts[2] == [2.0] and counts[3] == [2.0]  # q's pool of 2 allows N = 1 only


def test_distinct_n_counts_unique_ngrams_over_all_texts() -> None:
    assert metrics.distinct_n(["a b a b", "a b"], 2) == pytest.approx(2 / 4)
    assert metrics.distinct_n(["a b a b", "a b"], 1) == pytest.approx(2 / 6)
    assert metrics.distinct_n(["Hi, hi!"], 1) == pytest.approx(3 / 4)  # hi , hi !
    assert metrics.distinct_n(["one two", "three four"], 2) == 1.0
    assert math.isnan(metrics.distinct_n(["", "single"], 2))  # no bigram at all
