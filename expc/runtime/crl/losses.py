"""The contrastive RL objective of the paper (`train.py`: `update_critic`,
`update_actor_and_alpha`), as plain functions of tensors.

Critic: phi(s, a) and psi(g) are 64-d representations; the energy of a pair is the negative
L2 distance, the logits of a batch are the B x B matrix of energies of every (s_i, a_i) with
every goal g_j, and the positives sit on the diagonal (g_i is a future state of s_i's own
trajectory). The loss is InfoNCE over goals plus a logsumexp penalty that keeps the logits
from drifting.

Actor: SAC-style. A tanh-squashed Gaussian policy pi(a | s, g) maximises
Q(s, a, g) = -||phi(s, a) - psi(g)|| minus alpha times its log-probability, and alpha is tuned
so that the policy's entropy tracks a target.
"""

from __future__ import annotations

import torch
from torch.distributions import Normal

LOG_STD_MIN = -5.0
LOG_STD_MAX = 2.0
LOGSUMEXP_PENALTY = 0.1
"""The paper's `logsumexp_penalty_coeff`."""


def energy(sa_repr: torch.Tensor, g_repr: torch.Tensor) -> torch.Tensor:
    """logits[i, j] = -||phi(s_i, a_i) - psi(g_j)||_2, a [B, B] matrix."""
    # The direct difference, not the matmul expansion: exact at small distances.
    return -torch.cdist(sa_repr, g_repr, compute_mode="donot_use_mm_for_euclid_dist")


def critic_loss(
    logits: torch.Tensor, logsumexp_penalty: float = LOGSUMEXP_PENALTY, *, offset: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """InfoNCE over each row (a softmax over the batch's goals) plus
    `logsumexp_penalty * mean(logsumexp_j(logits[i, j] + 1e-6)^2)`.

    `offset`: row i's positive is goal i + offset, for a rank holding rows
    offset..offset + rows - 1 of a batch whose goals are all gathered (DDP).
    Returns (loss, the mean row logsumexp), the latter logged by the paper.
    """
    logsumexp = torch.logsumexp(logits, dim=1)
    infonce = -(logits.diagonal(offset) - logsumexp).mean()
    # The paper adds 1e-6 inside the penalty's logsumexp; kept for fidelity.
    penalised = torch.logsumexp(logits + 1e-6, dim=1)
    return infonce + logsumexp_penalty * (penalised**2).mean(), logsumexp.mean()


@torch.no_grad()
def categorical_accuracy(logits: torch.Tensor, *, offset: int = 0) -> torch.Tensor:
    """How often row i's largest logit is its own goal i (+ offset, see `critic_loss`): the
    contrastive classifier's accuracy at picking the true future among the batch's B goals
    (chance is 1/B)."""
    target = torch.arange(logits.shape[0], device=logits.device) + offset
    return (logits.argmax(dim=1) == target).float().mean()


def q_value(sa_repr: torch.Tensor, g_repr: torch.Tensor) -> torch.Tensor:
    """Q(s_i, a_i, g_i) = -||phi(s_i, a_i) - psi(g_i)||_2, row by row: [B]."""
    return -torch.linalg.vector_norm(sa_repr - g_repr, dim=-1)


def squash_log_std(raw: torch.Tensor) -> torch.Tensor:
    """The actor's log-std head: tanh, rescaled into [LOG_STD_MIN, LOG_STD_MAX]."""
    return LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(raw) + 1)


def tanh_gaussian_sample(
    mean: torch.Tensor, log_std: torch.Tensor, noise: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """a = tanh(mean + std * noise) and its log-probability summed over action dims,
    log pi = sum[ log N(x; mean, std) - log(1 - a^2 + 1e-6) ] (the paper's correction)."""
    std = log_std.exp()
    x = mean + std * noise
    action = torch.tanh(x)
    log_prob = Normal(mean, std).log_prob(x) - torch.log(1 - action.square() + 1e-6)
    return action, log_prob.sum(dim=-1)


def target_entropy(action_dim: int, entropy_param: float = 0.5) -> float:
    """The entropy alpha steers towards: -entropy_param * action_dim (paper: 0.5)."""
    return -entropy_param * action_dim


def actor_loss(log_prob: torch.Tensor, q: torch.Tensor, log_alpha: torch.Tensor) -> torch.Tensor:
    """mean(alpha * log pi - Q); alpha is a constant here (the temperature has its own loss)."""
    return (log_alpha.detach().exp() * log_prob - q).mean()


def alpha_loss(log_alpha: torch.Tensor, log_prob: torch.Tensor, target: float) -> torch.Tensor:
    """alpha * mean(stopgrad(-log pi - target)): alpha falls while the policy's entropy
    (-log pi) is above the target and rises when it is below."""
    return log_alpha.exp() * (-log_prob.detach() - target).mean()
