"""The two timescales of the paper, read off evaluation curves, and their scaling with n.

- tau_mem(n): the first training time at which the memorization fraction reaches a threshold
  (default 0.1: one generated sample in ten is a copy of a training image). The paper reads
  tau_mem where f_mem leaves zero; a small positive threshold does the same without being
  triggered by one lucky sample.
- tau_gen(n): the first training time at which the quality distance has made (1 - tolerance) of
  its total improvement, i.e. reaches  best + tolerance * (initial - best)  (default tolerance
  0.1). Defined relative to the curve's own start and best so that the offset of a biased
  distance (a Frechet distance never reaches 0 at finite sample size) does not matter.

Crossings are interpolated linearly in log(time) between the two evaluations around them,
since evaluations are log-spaced. A threshold that is already met at the first evaluation gives
an upper bound, one never met a lower bound (the last evaluated time): both are reported as
such and left out of the slope fit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

Bound = Literal["exact", "at_most", "at_least"]

MEMORIZATION_THRESHOLD = 0.1
GENERALIZATION_TOLERANCE = 0.1


def log_spaced_steps(first: int, last: int, count: int) -> list[int]:
    """Up to `count` distinct integer steps from `first` to `last`, evenly spaced in log(step)
    (fewer when rounding merges neighbours); `last` is always included."""
    if not 1 <= first <= last or count < 1:
        raise ValueError(f"need 1 <= first <= last and count >= 1, got {first}, {last}, {count}")
    if count == 1 or first == last:
        return [last]
    grid = np.exp(np.linspace(math.log(first), math.log(last), count))
    return sorted({int(round(s)) for s in grid} | {last})


@dataclass(frozen=True)
class Timescale:
    """A crossing time in training steps: exact (interpolated), or a one-sided bound."""

    steps: float
    bound: Bound

    def __str__(self) -> str:
        prefix = {"exact": "", "at_most": "<= ", "at_least": ">= "}[self.bound]
        return f"{prefix}{self.steps:.0f}"


def _check(times: Sequence[float], values: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(times, dtype=float)
    v = np.asarray(values, dtype=float)
    if t.ndim != 1 or t.shape != v.shape or t.size == 0:
        raise ValueError("times and values must be equal-length, non-empty 1-D sequences")
    if (t <= 0).any() or (np.diff(t) <= 0).any():
        raise ValueError("times must be positive and strictly increasing (log-time interpolation)")
    return t, v


def first_crossing_up(
    times: Sequence[float], values: Sequence[float], threshold: float
) -> Timescale:
    """The first time `values` reaches `threshold` from below (values >= threshold)."""
    t, v = _check(times, values)
    above = np.flatnonzero(v >= threshold)
    if above.size == 0:
        return Timescale(float(t[-1]), "at_least")
    i = int(above[0])
    if i == 0:
        return Timescale(float(t[0]), "at_most")
    # v[i-1] < threshold <= v[i]: interpolate log t linearly in the value.
    fraction = (threshold - v[i - 1]) / (v[i] - v[i - 1])
    log_t = math.log(t[i - 1]) + fraction * (math.log(t[i]) - math.log(t[i - 1]))
    return Timescale(float(math.exp(log_t)), "exact")


def first_crossing_down(times: Sequence[float], values: Sequence[float], level: float) -> Timescale:
    """The first time `values` falls to `level` or below."""
    return first_crossing_up(times, [-x for x in np.asarray(values, dtype=float)], -level)


def tau_mem(
    times: Sequence[float], fmem: Sequence[float], threshold: float = MEMORIZATION_THRESHOLD
) -> Timescale:
    """First time the memorization fraction reaches `threshold`."""
    return first_crossing_up(times, fmem, threshold)


def tau_gen(
    times: Sequence[float],
    quality: Sequence[float],
    tolerance: float = GENERALIZATION_TOLERANCE,
) -> Timescale:
    """First time a quality distance (lower is better) is within `tolerance` of its total drop
    from the first evaluation to its best value."""
    _, v = _check(times, quality)
    if not 0.0 <= tolerance < 1.0:
        raise ValueError(f"tolerance must lie in [0, 1), got {tolerance}")
    best = float(v.min())
    level = best + tolerance * (float(v[0]) - best)
    return first_crossing_down(times, quality, level)


@dataclass(frozen=True)
class PowerLawFit:
    """log10 tau = slope * log10 n + intercept, fitted by least squares."""

    slope: float
    intercept: float
    points: int

    def predict(self, n: float) -> float:
        return 10.0 ** (self.slope * math.log10(n) + self.intercept)


def loglog_slope(ns: Sequence[float], taus: Sequence[float]) -> PowerLawFit:
    """Least-squares slope of log tau against log n (1.0 means tau grows linearly with n)."""
    x = np.log10(np.asarray(ns, dtype=float))
    y = np.log10(np.asarray(taus, dtype=float))
    if x.shape != y.shape or x.size < 2 or np.unique(x).size < 2:
        raise ValueError("a slope needs at least two distinct n")
    slope, intercept = np.polyfit(x, y, 1)
    return PowerLawFit(float(slope), float(intercept), int(x.size))


def fit_exact(ns: Sequence[float], scales: Sequence[Timescale]) -> PowerLawFit | None:
    """The log-log fit over the n whose timescale was measured exactly (bounds left out)."""
    pairs = [(n, s.steps) for n, s in zip(ns, scales, strict=True) if s.bound == "exact"]
    if len({n for n, _ in pairs}) < 2:
        return None
    return loglog_slope([n for n, _ in pairs], [tau for _, tau in pairs])
