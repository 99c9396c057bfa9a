"""The unbiased pass@k estimator against direct enumeration of k-subsets; coverage; crossover."""

from __future__ import annotations

import itertools
from fractions import Fraction
from math import comb

import pytest

from expc.runtime.rlvr.passk import (
    coverage,
    crossover_k,
    pass_at_k,
    pass_at_k_curve,
    powers_of_two,
)


def enumerated_pass_at_k(n: int, c: int, k: int) -> float:
    """The share of all k-subsets of n samples (the first c correct) holding a correct one."""
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(i < c for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", range(1, 9))
def test_estimator_equals_enumeration_over_all_subsets(n: int) -> None:
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(enumerated_pass_at_k(n, c, k), abs=1e-12)


@pytest.mark.parametrize("n,c,k", [(1024, 3, 256), (256, 1, 128), (1024, 1000, 1), (300, 7, 200)])
def test_stable_product_equals_exact_binomials_at_large_n(n: int, c: int, k: int) -> None:
    exact = 1 - Fraction(comb(n - c, k), comb(n, k))
    assert pass_at_k(n, c, k) == pytest.approx(float(exact), rel=1e-10, abs=1e-12)


def test_pass_at_1_is_the_fraction_correct_and_pass_at_n_is_solved() -> None:
    assert pass_at_k(16, 5, 1) == pytest.approx(5 / 16)
    assert pass_at_k(16, 1, 16) == 1.0
    assert pass_at_k(16, 0, 16) == 0.0


def test_curve_averages_over_problems_on_powers_of_two() -> None:
    assert powers_of_two(256) == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    assert powers_of_two(6) == [1, 2, 4]
    curve = pass_at_k_curve([0, 2, 8], n=8)
    assert list(curve) == [1, 2, 4, 8]
    assert curve[1] == pytest.approx((0 + 2 / 8 + 1) / 3)
    assert curve[2] == pytest.approx((0 + enumerated_pass_at_k(8, 2, 2) + 1) / 3)
    assert curve[8] == pytest.approx(2 / 3) == coverage([0, 2, 8])
    values = list(curve.values())
    assert values == sorted(values)  # pass@k never falls as k grows


def test_invalid_counts_are_refused() -> None:
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)
    with pytest.raises(ValueError):
        pass_at_k(4, 2, 8)  # k > n: the estimator needs n >= k samples
    with pytest.raises(ValueError):
        pass_at_k_curve([], n=4)


def test_crossover_interpolates_in_log_k() -> None:
    ks = [1, 2, 4, 8]
    rl = [0.5, 0.6, 0.65, 0.7]
    base = [0.2, 0.4, 0.7, 0.9]
    # gap 0.2 at k=2, -0.05 at k=4: it closes 0.2 / 0.25 = 0.8 of the way in log2 k.
    assert crossover_k(ks, rl, base) == pytest.approx(2**1.8)
    assert crossover_k(ks, rl, [0.2, 0.6, 0.7, 0.9]) == pytest.approx(2.0)  # a tie counts
    assert crossover_k(ks, rl, [0.1, 0.2, 0.3, 0.4]) is None  # RL stays above
    assert crossover_k(ks, base, rl) is None  # the first curve starts below
