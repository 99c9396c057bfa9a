"""pass@k with the unbiased estimator (Chen et al. 2021; Yue et al. App. A.2), coverage, and the
k at which two pass@k curves cross.

For one problem with n samples of which c are correct, pass@k = 1 - C(n-c, k) / C(n, k): the
chance that a random k-subset of the n samples holds a correct one. The ratio of binomials is
computed as a product, prod_{i=n-c+1}^{n} (1 - k / i), which never forms the huge binomials.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem: n samples, c correct, 1 <= k <= n."""
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got n={n}, k={k}")
    if n - c < k:
        return 1.0  # every k-subset holds a correct sample
    return 1.0 - float(np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def powers_of_two(n: int) -> list[int]:
    """k = 1, 2, 4, ... up to n."""
    return [2**i for i in range(int(math.log2(n)) + 1)] if n >= 1 else []


def pass_at_k_curve(
    correct: Sequence[int], n: int, ks: Sequence[int] | None = None
) -> dict[int, float]:
    """Mean pass@k over problems, for each k (default: powers of two up to n)."""
    if not correct:
        raise ValueError("no problems")
    ks = powers_of_two(n) if ks is None else list(ks)
    return {k: float(np.mean([pass_at_k(n, c, k) for c in correct])) for k in ks}


def coverage(correct: Sequence[int]) -> float:
    """The fraction of problems solved by at least one sample (pass@n)."""
    return float(np.mean([c > 0 for c in correct]))


def crossover_k(ks: Sequence[int], rl: Sequence[float], base: Sequence[float]) -> float | None:
    """The k at which the base curve catches up with the RL curve, interpolated linearly in
    log2 k between the grid points where `rl - base` changes sign from > 0 to <= 0.

    None when the RL curve is not above the base at the first k, or never falls to it.
    """
    gap = np.asarray(rl, dtype=float) - np.asarray(base, dtype=float)
    if len(gap) == 0 or gap[0] <= 0:
        return None
    for i in range(1, len(gap)):
        if gap[i] <= 0:
            lo, hi = math.log2(ks[i - 1]), math.log2(ks[i])
            fraction = gap[i - 1] / (gap[i - 1] - gap[i])
            return float(2 ** (lo + fraction * (hi - lo)))
    return None
