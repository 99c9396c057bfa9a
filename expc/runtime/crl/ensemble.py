"""CRL's update for a vectorized ensemble: `update()` of the generated train.py for every
member at once. The actor, the temperature and the critic each take one backward pass
vectorized over the members (runtime.Ensemble), and each member steps its own optimisers.
A member here is the generated `CRLTraining` of one run: its `generator`, `optimizers`,
`target_entropy` and `run.objective.logsumexp_penalty` are read."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from expc.runtime.crl import losses
from expc.runtime.crl.buffer import CRLBatch
from expc.runtime.ensemble import Ensemble


def _actor_step(
    agent: nn.Module,
    obs: torch.Tensor,
    action: torch.Tensor,
    goal: torch.Tensor,
    noise: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One member's psi(g), actor loss and log pi, as update() computes them."""
    g_repr = agent.critic.psi(goal)
    mean, log_std = agent.actor(obs, goal)
    policy_action, log_prob = losses.tanh_gaussian_sample(mean, log_std, noise)
    q = losses.q_value(agent.critic.phi(obs, policy_action), g_repr.detach())
    return g_repr, losses.actor_loss(log_prob, q, agent.log_alpha), log_prob


def _critic_step(
    agent: nn.Module,
    obs: torch.Tensor,
    action: torch.Tensor,
    g_repr: torch.Tensor,
    penalty: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One member's critic loss, its logsumexp and its categorical accuracy."""
    logits = losses.energy(agent.critic.phi(obs, action), g_repr)
    loss, logsumexp = losses.critic_loss(logits, penalty)
    return loss, logsumexp, losses.categorical_accuracy(logits)


def ensemble_update(
    ensemble: Ensemble, members: Sequence[Any], batches: list[CRLBatch]
) -> list[dict[str, torch.Tensor]]:
    """update() for every member at once: the actor, then the temperature, then the
    critic, each backward pass vectorized over the members and each step taken by the
    member's own optimiser. Each member draws its actor noise from its generator right
    after its batch, as update() does."""
    obs, action, goal = (
        torch.stack(parts)
        for parts in zip(*((b.obs, b.action, b.goal) for b in batches), strict=True)
    )
    noise = torch.stack(
        [
            torch.randn(b.action.shape, generator=m.generator, device=b.action.device)
            for m, b in zip(members, batches, strict=True)
        ]
    )
    g_repr, actor_loss, log_prob = ensemble.map(_actor_step, obs, action, goal, noise)
    ensemble.backward(actor_loss, only="actor.")
    for member in members:
        member.optimizers["actor"].step()
    # The temperature: one scalar per member, its loss computed on the stack directly.
    log_alpha = ensemble.params["log_alpha"]
    entropy_target = torch.tensor([m.target_entropy for m in members], device=log_prob.device)
    alpha_loss = torch.vmap(losses.alpha_loss)(log_alpha, log_prob, entropy_target)
    ensemble.backward(alpha_loss, only="log_alpha")
    for member in members:
        member.optimizers["alpha"].step()
    penalty = torch.tensor([m.run.objective.logsumexp_penalty for m in members], device=obs.device)
    critic_loss, logsumexp, accuracy = ensemble.map(_critic_step, obs, action, g_repr, penalty)
    ensemble.backward(critic_loss, only="critic.")
    for member in members:
        member.optimizers["critic"].step()
    alpha = log_alpha.detach().exp()
    entropy = -log_prob.detach().mean(dim=1)
    return [
        {
            "critic_loss": critic_loss[k].detach(),
            "categorical_accuracy": accuracy[k],
            "logsumexp": logsumexp[k].detach(),
            "actor_loss": actor_loss[k].detach(),
            "alpha": alpha[k],
            "entropy": entropy[k],
        }
        for k in range(len(members))
    ]
