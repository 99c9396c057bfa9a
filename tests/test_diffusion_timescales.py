"""tau_mem, tau_gen and the log-log slope."""

from __future__ import annotations

import math

import pytest
from diffusion_fixtures import one_thread  # noqa: F401

from expc.runtime.diffusion.timescales import (
    Timescale,
    first_crossing_down,
    first_crossing_up,
    fit_exact,
    loglog_slope,
    tau_gen,
    tau_mem,
)

pytestmark = pytest.mark.usefixtures("one_thread")

STEPS = [100, 200, 400, 800, 1600, 3200]


def test_tau_mem_interpolates_on_log_time() -> None:
    fmem = [0.0, 0.0, 0.05, 0.15, 0.6, 0.9]
    # 0.1 lies half-way between 0.05 (step 400) and 0.15 (step 800): sqrt(400 * 800).
    assert tau_mem(STEPS, fmem) == Timescale(pytest.approx(math.sqrt(400 * 800)), "exact")
    assert tau_mem(STEPS, fmem, threshold=0.15).steps == pytest.approx(800)
    assert tau_mem(STEPS, fmem, threshold=0.6).steps == pytest.approx(1600)


def test_censored_timescales_are_bounds() -> None:
    never = tau_mem(STEPS, [0.0] * 6)
    assert never == Timescale(3200.0, "at_least") and str(never) == ">= 3200"
    at_once = tau_mem(STEPS, [0.5] * 6)
    assert at_once == Timescale(100.0, "at_most") and str(at_once) == "<= 100"
    # A non-monotone curve: the first crossing counts.
    assert first_crossing_up(STEPS, [0, 0.2, 0, 0, 0, 0], 0.1).steps < 200


def test_tau_gen_uses_the_drop_from_start_to_best() -> None:
    quality = [1000.0, 500.0, 150.0, 100.0, 100.0, 120.0]
    # best 100, start 1000: level = 100 + 0.1 * 900 = 190, between 500 (200) and 150 (400).
    expected = math.exp(math.log(200) + (500 - 190) / (500 - 150) * math.log(2))
    assert tau_gen(STEPS, quality).steps == pytest.approx(expected)
    # An offset does not move it (a biased distance has a positive floor).
    assert tau_gen(STEPS, [q + 50 for q in quality]).steps == pytest.approx(expected)
    assert tau_gen(STEPS, quality, tolerance=0.0).steps == pytest.approx(800)
    assert first_crossing_down(STEPS, quality, 50.0).bound == "at_least"
    with pytest.raises(ValueError, match="tolerance"):
        tau_gen(STEPS, quality, tolerance=1.0)


def test_times_must_be_log_friendly() -> None:
    with pytest.raises(ValueError, match="increasing"):
        tau_mem([0, 10], [0.0, 1.0])
    with pytest.raises(ValueError, match="equal-length"):
        tau_mem([10, 20], [0.0])


def test_loglog_slope_recovers_power_laws() -> None:
    ns = [32, 64, 128, 256]
    assert loglog_slope(ns, [5.0 * n for n in ns]).slope == pytest.approx(1.0)
    fit = loglog_slope(ns, [300.0 * n**0.5 for n in ns])
    assert fit.slope == pytest.approx(0.5) and fit.predict(100) == pytest.approx(3000.0)
    assert loglog_slope(ns, [7.0] * 4).slope == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="two distinct"):
        loglog_slope([8, 8], [1.0, 2.0])


def test_fit_exact_leaves_bounds_out() -> None:
    scales = [
        Timescale(320.0, "exact"),
        Timescale(640.0, "exact"),
        Timescale(10.0, "at_most"),
        Timescale(2000.0, "at_least"),
    ]
    fit = fit_exact([32, 64, 128, 256], scales)
    assert fit is not None and fit.points == 2 and fit.slope == pytest.approx(1.0)
    assert fit_exact([32, 64], [Timescale(1.0, "exact"), Timescale(9.0, "at_least")]) is None


def test_log_spaced_steps() -> None:
    from expc.runtime.diffusion.timescales import log_spaced_steps

    assert log_spaced_steps(100, 10000, 3) == [100, 1000, 10000]
    steps = log_spaced_steps(10, 5000, 16)
    assert steps[0] == 10 and steps[-1] == 5000 and len(steps) == 16
    ratios = [b / a for a, b in zip(steps, steps[1:], strict=False)]
    assert max(ratios) / min(ratios) < 1.1  # a constant factor apart, up to rounding
    assert log_spaced_steps(1, 4, 10) == [1, 2, 3, 4]  # rounding merges, never repeats
    assert log_spaced_steps(7, 7, 5) == [7] and log_spaced_steps(3, 9, 1) == [9]
    with pytest.raises(ValueError):
        log_spaced_steps(0, 10, 3)
