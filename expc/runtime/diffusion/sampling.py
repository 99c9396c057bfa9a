"""DDPM ancestral sampling and DDIM, on a strided subset of the T training timesteps.

Both work with any eps-model callable (x_t, t) -> eps, t an integer tensor of shape (batch,).
With `steps` < T the samplers visit `steps` evenly spaced timesteps; the DDPM sampler then uses
the betas implied between visited steps (beta'_i = 1 - alpha_bar[t_i] / alpha_bar[t_{i-1}]),
the respacing of Nichol & Dhariwal, so that it is still the ancestral sampler of a shorter chain.
DDIM (Song et al. 2021) with eta = 0 is deterministic (the paper samples with 100 DDIM steps,
eta = 0); eta = 1 gives the same distribution of updates as DDPM.
"""

from __future__ import annotations

from typing import Literal

import torch

from expc.runtime.diffusion.schedule import EpsModel, NoiseSchedule

SamplerKind = Literal["ddpm", "ddim"]


def sampling_timesteps(total: int, steps: int) -> list[int]:
    """`steps` distinct timesteps from T-1 down to 0, evenly spaced."""
    if not 1 <= steps <= total:
        raise ValueError(f"sampling steps must be in [1, {total}], got {steps}")
    grid = torch.linspace(0, total - 1, steps, dtype=torch.float64).round().long()
    return sorted({int(t) for t in grid}, reverse=True)


def _predict_x0(
    x: torch.Tensor, eps: torch.Tensor, alpha_bar: torch.Tensor, clip: bool
) -> torch.Tensor:
    x0 = (x - (1.0 - alpha_bar).sqrt() * eps) / alpha_bar.sqrt()
    # Data lives in [-1, 1]: clipping the estimate is the usual DDPM practice and keeps early,
    # poor models from drifting off the image range.
    return x0.clamp(-1.0, 1.0) if clip else x0


def _step(
    eps_model: EpsModel,
    x: torch.Tensor,
    t: int,
    alpha_bar: torch.Tensor,
    alpha_bar_prev: torch.Tensor,
    *,
    method: SamplerKind,
    eta: float,
    clip: bool,
    noise: torch.Tensor,
) -> torch.Tensor:
    """One move from timestep t to the previous visited one (alpha_bar_prev = 1 past t = 0)."""
    t_batch = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
    eps = eps_model(x, t_batch)
    x0 = _predict_x0(x, eps, alpha_bar, clip)
    if method == "ddpm":
        # Posterior q(x_prev | x_t, x0) of the (respaced) chain: mean and variance beta-tilde.
        beta = 1.0 - alpha_bar / alpha_bar_prev
        mean = (alpha_bar_prev.sqrt() * beta / (1.0 - alpha_bar)) * x0 + (
            (1.0 - beta).sqrt() * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar)
        ) * x
        variance = beta * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar)
        return mean + variance.sqrt() * noise
    # DDIM: re-derive eps from the (possibly clipped) x0 so both stay consistent.
    eps = (x - alpha_bar.sqrt() * x0) / (1.0 - alpha_bar).sqrt()
    sigma = (
        eta
        * ((1.0 - alpha_bar_prev) / (1.0 - alpha_bar) * (1.0 - alpha_bar / alpha_bar_prev)).sqrt()
    )
    direction = (1.0 - alpha_bar_prev - sigma**2).clamp(min=0.0).sqrt() * eps
    return alpha_bar_prev.sqrt() * x0 + direction + sigma * noise


@torch.no_grad()
def sample(
    eps_model: EpsModel,
    schedule: NoiseSchedule,
    shape: tuple[int, int, int],
    count: int,
    *,
    method: SamplerKind = "ddim",
    steps: int = 100,
    eta: float = 0.0,
    batch_size: int = 256,
    clip: bool = True,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """`count` images (count, *shape) drawn by reverse diffusion, `batch_size` at a time.

    All randomness (the starting noise and DDPM's / DDIM-eta's per-step noise) comes from
    `generator` on the CPU, so a seeded generator gives the same samples on any device and
    lets evaluations at different training times use the same noise.
    """
    if method not in ("ddpm", "ddim"):
        raise ValueError(f"unknown sampler {method!r}; expected 'ddpm' or 'ddim'")
    visited = sampling_timesteps(schedule.steps, steps)
    alpha_bars = schedule.alpha_bar.to(torch.float32)
    one = torch.ones((), dtype=torch.float32)
    out = []
    for start in range(0, count, batch_size):
        size = min(batch_size, count - start)
        x = torch.randn((size, *shape), generator=generator).to(device)
        for index, t in enumerate(visited):
            prev = visited[index + 1] if index + 1 < len(visited) else None
            alpha_bar_prev = alpha_bars[prev] if prev is not None else one
            stochastic = method == "ddpm" or eta > 0
            noise = (
                torch.randn((size, *shape), generator=generator).to(device)
                if stochastic and prev is not None
                else torch.zeros((), device=device)
            )
            x = _step(
                eps_model,
                x,
                t,
                alpha_bars[t].to(device),
                alpha_bar_prev.to(device),
                method=method,
                eta=eta,
                clip=clip,
                noise=noise,
            )
        out.append(x.cpu())
    return torch.cat(out) if out else torch.empty((0, *shape))
