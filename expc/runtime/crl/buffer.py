"""A replay buffer of whole trajectories with the paper's geometric future-goal sampling.

Storage is `[time, env, ...]`: each collection step appends one row for all environments,
so every environment's column is its own trajectory in time order, as in the paper's
`TrajectoryUniformSamplingQueue`. The oldest rows are overwritten once `capacity` is reached.

Sampling follows `flatten_crl_fn` of the paper's `buffer.py`. For a transition at time i,
the goal is the goal part of the observation at a later time j of the same episode, drawn
with probability proportional to gamma^(j - i) over the next `horizon` steps (the paper's
window is one episode long); episodes are told apart by their id, as the paper does with
its per-episode `seed`. As in the paper, j = i (the state itself) has weight 1e-5, so a
transition with no stored future (an episode's last step) gets its own state as the goal.

One difference, deliberate: the paper draws whole windows and trains on every position of
them; here each batch row draws its (env, time) uniformly and independently, which gives the
same goal distribution per transition without the within-batch correlation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

SELF_WEIGHT = 1e-5
"""Weight of j = i, the paper's `jnp.eye(seq_len) * 1e-5`."""


@dataclass
class CRLBatch:
    """A contrastive training batch: goal[k] is a future state of obs[k]'s trajectory."""

    obs: torch.Tensor  # [B, obs_dim]
    action: torch.Tensor  # [B, action_dim]
    goal: torch.Tensor  # [B, goal_dim]
    offset: torch.Tensor  # [B] j - i, the number of steps from the state to its goal
    env: torch.Tensor  # [B] which environment's trajectory
    time: torch.Tensor  # [B] row of the state, 0 = oldest stored row


class TrajectoryBuffer:
    """`capacity` rows of `num_envs` transitions (observation, action, episode id)."""

    def __init__(
        self,
        capacity: int,
        num_envs: int,
        obs_dim: int,
        action_dim: int,
        goal_slice: slice,
        gamma: float,
        horizon: int,
        device: str | torch.device = "cpu",
    ):
        if not 0 < gamma <= 1:
            raise ValueError(f"gamma must be in (0, 1], got {gamma}")
        self.capacity = capacity
        self.num_envs = num_envs
        self.goal_slice = goal_slice
        self.gamma = gamma
        self.horizon = horizon
        self.device = torch.device(device)
        self.obs = torch.zeros(capacity, num_envs, obs_dim, device=self.device)
        self.action = torch.zeros(capacity, num_envs, action_dim, device=self.device)
        self.episode_id = torch.zeros(capacity, num_envs, dtype=torch.long, device=self.device)
        self.next_row = 0  # physical row the next `add` writes
        self.size = 0  # rows stored
        # gamma^k for k = 1..horizon, computed once.
        self._discount = gamma ** torch.arange(1, horizon + 1, device=self.device).double()

    def add(self, obs: torch.Tensor, action: torch.Tensor, episode_id: torch.Tensor) -> None:
        """Append one time step of every environment: obs [E, obs_dim], action [E, A]."""
        self.obs[self.next_row] = obs
        self.action[self.next_row] = action
        self.episode_id[self.next_row] = episode_id
        self.next_row = (self.next_row + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def _physical(self, time: torch.Tensor) -> torch.Tensor:
        oldest = (self.next_row - self.size) % self.capacity
        return (oldest + time) % self.capacity

    def offset_weights(self, env: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        """Unnormalised probabilities [B, horizon + 1] of goal offsets 0..horizon."""
        steps = torch.arange(1, self.horizon + 1, device=self.device)
        future = time[:, None] + steps  # [B, H] logical rows of candidate goals
        stored = future < self.size
        same_episode = (
            self.episode_id[self._physical(future.clamp(max=self.size - 1)), env[:, None]]
            == self.episode_id[self._physical(time), env][:, None]
        )
        future_weights = self._discount * (stored & same_episode)
        own = torch.full((len(env), 1), SELF_WEIGHT, dtype=torch.float64, device=self.device)
        return torch.cat([own, future_weights], dim=1)

    def sample(self, batch_size: int, generator: torch.Generator) -> CRLBatch:
        """Draw `batch_size` (state, action, future goal) triples, rows independent."""
        if self.size == 0:
            raise RuntimeError("sample() from an empty buffer")
        env = torch.randint(self.num_envs, (batch_size,), generator=generator, device=self.device)
        time = torch.randint(self.size, (batch_size,), generator=generator, device=self.device)
        weights = self.offset_weights(env, time)
        offset = torch.multinomial(weights, 1, generator=generator).squeeze(1)
        row = self._physical(time)
        goal_row = self._physical(time + offset)
        return CRLBatch(
            obs=self.obs[row, env],
            action=self.action[row, env],
            goal=self.obs[goal_row, env][:, self.goal_slice],
            offset=offset,
            env=env,
            time=time,
        )

    # --- checkpoints -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "obs": self.obs,
            "action": self.action,
            "episode_id": self.episode_id,
            "next_row": self.next_row,
            "size": self.size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.obs = state["obs"].to(self.device).clone()
        self.action = state["action"].to(self.device).clone()
        self.episode_id = state["episode_id"].to(self.device).clone()
        self.next_row = int(state["next_row"])
        self.size = int(state["size"])
