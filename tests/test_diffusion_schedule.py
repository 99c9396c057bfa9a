"""Noise schedules, the forward process, the loss, and the DDPM/DDIM samplers."""

from __future__ import annotations

import math

import pytest
import torch
from diffusion_fixtures import one_thread  # noqa: F401

from expc.runtime.diffusion.sampling import sample, sampling_timesteps
from expc.runtime.diffusion.schedule import (
    cosine_schedule,
    denoising_loss,
    linear_schedule,
    make_schedule,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_linear_schedule_matches_ho_et_al() -> None:
    schedule = linear_schedule()
    assert schedule.steps == 1000
    assert schedule.betas[0].item() == pytest.approx(1e-4)
    assert schedule.betas[-1].item() == pytest.approx(2e-2)
    alpha_bar = schedule.alpha_bar
    assert (alpha_bar[1:] < alpha_bar[:-1]).all()
    # Known value for DDPM's schedule: sqrt(alpha_bar_T) ~ 6.4e-3 (the data is gone at T).
    assert alpha_bar[-1].sqrt().item() == pytest.approx(6.37e-3, rel=0.02)


def test_cosine_schedule_follows_its_closed_form() -> None:
    schedule = cosine_schedule(1000)
    t = torch.tensor([0, 250, 500, 999])
    f = lambda s: math.cos((s / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    expected = torch.tensor([f(int(s) + 1) / f(0) for s in t], dtype=torch.float64)
    assert torch.allclose(schedule.alpha_bar[t][:3], expected[:3], rtol=1e-9)
    assert schedule.betas.max().item() <= 0.999
    assert make_schedule("cosine", 50).steps == 50
    with pytest.raises(ValueError, match="unknown noise schedule"):
        make_schedule("quadratic")  # type: ignore[arg-type]


def test_q_sample_has_the_forward_process_statistics() -> None:
    schedule = linear_schedule()
    x0 = torch.full((20000, 1, 1, 1), 0.5)
    t = torch.full((20000,), 300)
    xt = schedule.q_sample(x0, t, torch.randn(x0.shape, generator=torch.Generator().manual_seed(0)))
    alpha_bar = schedule.alpha_bar[300].item()
    assert xt.mean().item() == pytest.approx(0.5 * math.sqrt(alpha_bar), abs=0.02)
    assert xt.std().item() == pytest.approx(math.sqrt(1 - alpha_bar), rel=0.02)


def test_denoising_loss_is_zero_for_the_true_noise_and_seedable() -> None:
    schedule = linear_schedule(100)
    x0 = torch.zeros(8, 1, 4, 4)  # with x0 = 0, eps = x_t / sqrt(1 - alpha_bar) exactly

    def oracle(xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return xt / (1.0 - schedule.alpha_bar[t].float()).sqrt().view(-1, 1, 1, 1)

    assert denoising_loss(oracle, x0, schedule).item() == pytest.approx(0.0, abs=1e-10)
    zero = lambda xt, t: torch.zeros_like(xt)  # noqa: E731
    # Predicting 0 costs E[eps^2] = 1.
    assert denoising_loss(zero, torch.randn(4096, 1, 2, 2), schedule).item() == pytest.approx(
        1.0, abs=0.05
    )
    a = denoising_loss(zero, x0, schedule, generator=torch.Generator().manual_seed(1))
    b = denoising_loss(zero, x0, schedule, generator=torch.Generator().manual_seed(1))
    assert a.item() == b.item()


def test_sampling_timesteps_are_strided_and_descending() -> None:
    assert sampling_timesteps(1000, 1000) == list(range(999, -1, -1))
    steps = sampling_timesteps(1000, 10)
    assert steps[0] == 999 and steps[-1] == 0 and len(steps) == 10
    assert all(a > b for a, b in zip(steps, steps[1:], strict=False))
    with pytest.raises(ValueError):
        sampling_timesteps(10, 11)


def _gaussian_oracle(schedule, mean: float, std: float):
    """The exact eps-prediction E[eps | x_t] when the data is N(mean, std^2) per pixel."""

    def eps(xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        alpha_bar = schedule.alpha_bar[t].float().view(-1, 1, 1, 1)
        variance = alpha_bar * std**2 + 1.0 - alpha_bar
        return (1.0 - alpha_bar).sqrt() * (xt - alpha_bar.sqrt() * mean) / variance

    return eps


@pytest.mark.parametrize(
    ("method", "steps", "rel"),
    # The full chain is exact up to Monte Carlo error; fewer steps shrink the spread (the
    # measured std is 0.188 for 250 respaced DDPM steps, 0.177 for 50 DDIM steps).
    [
        pytest.param("ddpm", 1000, 0.03, marks=pytest.mark.slow),
        pytest.param("ddim", 1000, 0.03, marks=pytest.mark.slow),
        ("ddpm", 250, 0.08),
        ("ddim", 50, 0.15),
    ],
)
def test_samplers_reproduce_a_gaussian_with_its_exact_score(method, steps, rel) -> None:
    schedule = linear_schedule()
    model = _gaussian_oracle(schedule, mean=0.3, std=0.2)
    out = sample(
        model,
        schedule,
        (1, 2, 2),
        1000,
        method=method,
        steps=steps,
        clip=False,
        generator=torch.Generator().manual_seed(0),
    )
    assert out.shape == (1000, 1, 2, 2)
    assert out.mean().item() == pytest.approx(0.3, abs=0.01)
    assert out.std().item() == pytest.approx(0.2, rel=rel)
    assert out.std().item() <= 0.2 * 1.03  # discretisation only ever narrows it here


def test_ddim_with_eta_one_is_the_ddpm_sampler() -> None:
    schedule = linear_schedule(200)
    model = _gaussian_oracle(schedule, mean=-0.2, std=0.5)
    kwargs = {"steps": 20, "batch_size": 7, "clip": True}
    ddpm = sample(
        model,
        schedule,
        (2, 3, 3),
        16,
        method="ddpm",
        generator=torch.Generator().manual_seed(5),
        **kwargs,
    )
    ddim = sample(
        model,
        schedule,
        (2, 3, 3),
        16,
        method="ddim",
        eta=1.0,
        generator=torch.Generator().manual_seed(5),
        **kwargs,
    )
    assert torch.allclose(ddpm, ddim, atol=1e-5)


def test_deterministic_ddim_returns_the_only_training_point() -> None:
    schedule = cosine_schedule(100)
    point = torch.linspace(-0.9, 0.9, 9).view(1, 3, 3)

    def eps(xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # the score of a single image
        alpha_bar = schedule.alpha_bar[t].float().view(-1, 1, 1, 1)
        return (xt - alpha_bar.sqrt() * point) / (1.0 - alpha_bar).sqrt()

    out = sample(eps, schedule, (1, 3, 3), 5, steps=10, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out, point.expand(5, 1, 3, 3), atol=1e-5)
    # Batching does not change the samples: the noise is drawn per batch in order.
    again = sample(
        eps,
        schedule,
        (1, 3, 3),
        5,
        steps=10,
        batch_size=2,
        generator=torch.Generator().manual_seed(0),
    )
    assert torch.allclose(again, out, atol=1e-6)
    with pytest.raises(ValueError, match="unknown sampler"):
        sample(eps, schedule, (1, 3, 3), 1, method="euler")  # type: ignore[arg-type]
