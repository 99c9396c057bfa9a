"""GRPO (Shao et al. 2024, DeepSeekMath), as the RLVR paper trains with it (Yue et al. App. A.1).

For each prompt, G completions are sampled from the current policy (pi_old) and scored by the
verifier. Each completion's advantage is its reward normalised within its group,
A_i = (r_i - mean(r)) / std(r), the same for every token of it. The objective is PPO's clipped
surrogate with the per-token ratio rho = pi_theta / pi_old, averaged over the tokens of each
completion and then over completions, minus beta times the k3 estimate of KL(pi_theta || pi_ref):

    J = mean_i (1/|o_i|) sum_t [ min(rho A, clip(rho, 1-eps, 1+eps) A) - beta KL_t ],
    KL_t = pi_ref/pi_theta - log(pi_ref/pi_theta) - 1.

The loss to minimise is -J. The RLVR paper's runs use beta = 0. The step itself (rollouts,
rewards, updates) is written out in the generated train.py of an rlvr spec.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F


def group_advantages(rewards: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """(prompts, G) rewards -> (prompts, G) advantages, normalised within each row.

    The std is torch's default (unbiased), as TRL's GRPO trainer computes it; eps keeps a group
    whose rewards are all equal at advantage 0 (it carries no learning signal).
    """
    if rewards.dim() != 2 or rewards.size(1) < 2:
        raise ValueError(f"rewards must be (prompts, G) with G >= 2, got {tuple(rewards.shape)}")
    mean = rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, keepdim=True)
    return (rewards - mean) / (std + eps)


def completion_mask(completions: torch.Tensor, stop_token: int | None) -> torch.Tensor:
    """1.0 on the tokens a completion really produced: up to and including its first stop token
    (everything after it is padding that `generate` filled in), 0.0 after."""
    if stop_token is None:
        return torch.ones_like(completions, dtype=torch.float32)
    is_stop = (completions == stop_token).int()
    stops_before = is_stop.cumsum(dim=1) - is_stop  # stop tokens strictly before position t
    return (stops_before == 0).float()


def token_logprobs(
    model: Any, prompts: torch.Tensor, completions: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """log pi(o_t | prompt, o_<t) for every completion token: (batch, T).

    Logits are divided by the sampling temperature, so that pi is the distribution the
    completions were drawn from (top-p's truncation is left out, as in TRL).
    """
    tokens = torch.cat((prompts, completions), dim=1)
    logits, _ = model(tokens[:, :-1])
    logits = logits[:, prompts.size(1) - 1 :].float() / temperature
    return torch.gather(F.log_softmax(logits, dim=-1), 2, completions[:, :, None]).squeeze(2)


@dataclass(frozen=True)
class LossParts:
    """The loss and what to log about it."""

    loss: torch.Tensor
    clip_fraction: float  # share of completion tokens whose ratio was clipped
    kl: float  # mean per-token k3 KL to the reference (0 without one)
    ratio: float  # mean per-token ratio pi_theta / pi_old


def grpo_loss(
    logp: torch.Tensor,
    logp_old: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_eps: float = 0.2,
    kl_beta: float = 0.0,
    logp_ref: torch.Tensor | None = None,
) -> LossParts:
    """-J for a batch of completions. logp, logp_old, logp_ref, mask: (batch, T) per token;
    advantages: (batch,), one per completion (group-normalised)."""
    if kl_beta > 0 and logp_ref is None:
        raise ValueError("kl_beta > 0 needs the reference policy's log-probabilities")
    ratio = torch.exp(logp - logp_old)
    advantage = advantages[:, None]
    surrogate = torch.minimum(
        ratio * advantage, ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps) * advantage
    )
    per_token = surrogate
    kl = torch.zeros_like(logp)
    if logp_ref is not None:
        log_ref_over_theta = logp_ref - logp
        kl = torch.exp(log_ref_over_theta) - log_ref_over_theta - 1.0
        per_token = per_token - kl_beta * kl
    lengths = mask.sum(dim=1).clamp(min=1.0)
    objective = ((per_token * mask).sum(dim=1) / lengths).mean()
    tokens = mask.sum().clamp(min=1.0)
    clipped = ((ratio - 1.0).abs() > clip_eps).float()
    return LossParts(
        loss=-objective,
        clip_fraction=float((clipped * mask).sum() / tokens),
        kl=float((kl.detach() * mask).sum() / tokens),
        ratio=float((ratio.detach() * mask).sum() / tokens),
    )
