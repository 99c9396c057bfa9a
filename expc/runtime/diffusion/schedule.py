"""DDPM noise schedules, the forward process q(x_t | x_0), and the epsilon-prediction loss.

Conventions (Ho et al. 2020): timesteps t = 0 .. T-1 index the betas; alpha_bar[t] =
prod_{s <= t} (1 - beta_s), and x_t = sqrt(alpha_bar[t]) x_0 + sqrt(1 - alpha_bar[t]) eps.
The model sees t as an integer tensor and predicts eps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

EpsModel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
ScheduleKind = Literal["linear", "cosine"]


@dataclass(frozen=True)
class NoiseSchedule:
    """betas and the cumulative products every formula needs, as float64 (T,) tensors."""

    betas: torch.Tensor

    def __post_init__(self) -> None:
        betas = self.betas
        if betas.ndim != 1 or betas.numel() < 1:
            raise ValueError("betas must be a non-empty 1-D tensor")
        if not bool(((betas > 0) & (betas < 1)).all()):
            raise ValueError("every beta must lie in (0, 1)")

    @property
    def steps(self) -> int:
        """T, the number of diffusion steps."""
        return self.betas.numel()

    @property
    def alpha_bar(self) -> torch.Tensor:
        return torch.cumprod(1.0 - self.betas, dim=0)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) noise, t one index per image."""
        alpha_bar = self.alpha_bar.to(device=x0.device)[t].to(x0.dtype)
        alpha_bar = alpha_bar.view(-1, *([1] * (x0.ndim - 1)))
        return alpha_bar.sqrt() * x0 + (1.0 - alpha_bar).sqrt() * noise


def linear_schedule(
    steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 2e-2
) -> NoiseSchedule:
    """Ho et al.'s linear betas; the paper's default (T = 1000, 1e-4 .. 2e-2)."""
    return NoiseSchedule(torch.linspace(beta_start, beta_end, steps, dtype=torch.float64))


def cosine_schedule(
    steps: int = 1000, offset: float = 0.008, max_beta: float = 0.999
) -> NoiseSchedule:
    """Nichol & Dhariwal's cosine schedule: alpha_bar(t) = cos^2((t/T + s)/(1 + s) * pi/2),
    betas clipped at max_beta so the last step stays finite."""
    grid = torch.arange(steps + 1, dtype=torch.float64) / steps
    f = torch.cos((grid + offset) / (1 + offset) * math.pi / 2) ** 2
    betas = (1.0 - f[1:] / f[:-1]).clamp(max=max_beta)
    return NoiseSchedule(betas)


def make_schedule(
    kind: ScheduleKind,
    steps: int = 1000,
    *,
    beta_start: float = 1e-4,
    beta_end: float = 2e-2,
) -> NoiseSchedule:
    """The schedule a spec names."""
    if kind == "linear":
        return linear_schedule(steps, beta_start, beta_end)
    if kind == "cosine":
        return cosine_schedule(steps)
    raise ValueError(f"unknown noise schedule {kind!r}; expected 'linear' or 'cosine'")


def denoising_loss(
    eps_model: EpsModel,
    x0: torch.Tensor,
    schedule: NoiseSchedule,
    *,
    generator: torch.Generator | None = None,
    shard: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """The DDPM "simple" loss: mean over pixels and images of ||eps - eps_theta(x_t, t)||^2,
    with t ~ U{0, ..., T-1} and eps ~ N(0, I) per image.

    Pass a seeded generator to get the same (t, eps) every call, which turns this into a
    low-variance evaluation of train or test loss; without one it uses the global RNG.
    `shard` (DDP): (t, eps) are drawn for the whole batch, then each rank keeps its slice of
    images, timesteps and noise, so the ranks together see exactly the one-process batch.
    """
    t, noise = noising(x0, schedule, generator)
    if shard is not None:
        x0, t, noise = shard(x0), shard(t), shard(noise)
    return noise_prediction_loss(eps_model, x0, t, noise, schedule)


def noising(
    x0: torch.Tensor, schedule: NoiseSchedule, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The random half of `denoising_loss`: t ~ U{0, ..., T-1} and eps ~ N(0, I) per image,
    in this order from `generator` (the global RNG without one). An ensemble member draws
    them here from its own generator, exactly as its standalone run does."""
    # Drawn where the generator lives (a CPU generator also serves a CUDA model), then moved.
    device = generator.device if generator is not None else x0.device
    t = torch.randint(0, schedule.steps, (x0.shape[0],), generator=generator, device=device)
    noise = torch.randn(x0.shape, generator=generator, device=device, dtype=x0.dtype)
    return t.to(x0.device), noise.to(x0.device)


def noise_prediction_loss(
    eps_model: EpsModel,
    x0: torch.Tensor,
    t: torch.Tensor,
    noise: torch.Tensor,
    schedule: NoiseSchedule,
) -> torch.Tensor:
    """The deterministic half of `denoising_loss`: ||eps - eps_theta(x_t, t)||^2 averaged,
    for drawn (t, eps). It draws nothing, so it also runs under vmap (ensembles)."""
    return F.mse_loss(eps_model(schedule.q_sample(x0, t, noise), t), noise)
