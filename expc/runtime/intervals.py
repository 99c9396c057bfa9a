"""Error bars over seeds: a mean with its 95% confidence interval, and the paired
difference of two groups of runs trained on the same seeds, with a plain verdict.

Seeds are few (3 to 5), so intervals use Student's t, not the normal 1.96: with 3 seeds the
half-width is 4.30 standard errors, and saying so is the point. A paired difference (run B
minus run A, seed by seed) removes what the seed does to both, which is why it is often
decisive where two overlapping intervals are not.
"""

from __future__ import annotations

import math
import random
import re
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

# Student's t, 0.975 quantile (two-sided 95%), by degrees of freedom 1..30.
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def split_seed(label: str) -> tuple[str, int | None]:
    """A run (or series) name without its seed part, and the seed: `gated-seed_2` ->
    ("gated", 2), `seed_0` -> ("main", 0); a name without one -> (name, None)."""
    parts = label.split("-")
    seeds = [p for p in parts if re.fullmatch(r"seed_\d+", p)]
    if len(seeds) != 1:
        return label, None
    rest = [p for p in parts if p != seeds[0]]
    return "-".join(rest) or "main", int(seeds[0].removeprefix("seed_"))


def by_seed(named: dict[str, T]) -> dict[str, dict[int, T]]:
    """Items named like runs, grouped by their name without its seed part: {"gated":
    {0: ..., 1: ...}}; only groups with at least two seeds (items without a seed part are
    left out)."""
    grouped: dict[str, dict[int, T]] = {}
    for name, item in named.items():
        base, seed = split_seed(name)
        if seed is not None:
            grouped.setdefault(base, {})[seed] = item
    return {base: seeds for base, seeds in grouped.items() if len(seeds) > 1}


def t975(df: int) -> float:
    """The two-sided 95% quantile of Student's t with `df` degrees of freedom."""
    if df < 1:
        raise ValueError("a t interval needs at least two values")
    if df <= len(_T975):
        return _T975[df - 1]
    # Beyond 30: the normal quantile with two Cornish-Fisher terms (error < 1e-4).
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


# Fewer seeds than this get their difference and interval but no verdict.
MIN_SEEDS_FOR_VERDICT = 3


@dataclass(frozen=True)
class Estimate:
    """A mean over n values, their sample standard deviation, and the 95% interval's half
    width (nan for a single value: one seed says nothing about its noise)."""

    mean: float
    std: float
    n: int
    half_width: float

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width

    def excludes_zero(self) -> bool:
        return self.n > 1 and math.isfinite(self.half_width) and (self.low > 0 or self.high < 0)


def estimate(values: list[float]) -> Estimate:
    """Mean, sample standard deviation and t-interval of finite values."""
    values = [v for v in values if math.isfinite(v)]
    if not values:
        return Estimate(math.nan, math.nan, 0, math.nan)
    mean = statistics.fmean(values)
    if len(values) == 1:
        return Estimate(mean, math.nan, 1, math.nan)
    std = statistics.stdev(values)
    return Estimate(mean, std, len(values), t975(len(values) - 1) * std / math.sqrt(len(values)))


def paired(first: dict[int, float], second: dict[int, float]) -> Estimate:
    """second - first over the seeds both have (dicts: seed -> value)."""
    common = sorted(set(first) & set(second))
    return estimate([second[s] - first[s] for s in common])


def verdict(first: str, second: str, metric: str, difference: Estimate) -> str:
    """One line for `second - first`: which is lower and by how much, or within noise."""
    if difference.n < 2:
        return f"{second} vs {first}: {metric} has one common seed, no interval"
    if difference.n < MIN_SEEDS_FOR_VERDICT:
        # Two seeds that agree give a zero-width interval: exact-looking, and worth little.
        return (
            f"{second} vs {first}: {metric} {difference.mean:+.4g} ± "
            f"{difference.half_width:.2g} ({difference.n} seeds: too few for a verdict)"
        )
    size = f"{abs(difference.mean):.4g} ± {difference.half_width:.2g}"
    if not difference.excludes_zero():
        return (
            f"{second} vs {first}: {metric} within noise "
            f"({difference.mean:+.4g} ± {difference.half_width:.2g}, {difference.n} seeds)"
        )
    direction = "lower" if difference.mean < 0 else "higher"
    return f"{second} {direction} than {first} in {metric} by {size} ({difference.n} seeds)"


def bootstrap_over_seeds(
    seeds: list[int],
    statistic: Callable[[list[int]], float | None],
    resamples: int = 1000,
    rng_seed: int = 0,
) -> tuple[float, float, int] | None:
    """A percentile 95% interval of `statistic` (a function of a list of seeds, repeats
    allowed) from resampling the seeds with replacement: for an analysis with no closed
    form (a fitted slope, a crossover). Returns (low, high, resamples that gave a value),
    or None when fewer than two seeds or fewer than half the resamples gave one. Seeded,
    so a report is the same each time it is written."""
    if len(seeds) < 2:
        return None
    rng = random.Random(rng_seed)
    values = []
    for _ in range(resamples):
        value = statistic([rng.choice(seeds) for _ in seeds])
        if value is not None and math.isfinite(value):
            values.append(value)
    if len(values) < resamples / 2:
        return None
    values.sort()
    return (
        values[int(0.025 * (len(values) - 1))],
        values[int(0.975 * (len(values) - 1))],
        len(values),
    )
