"""Acting in the environments: the stochastic actor's samples (or its mode, to evaluate),
and collection of (state, action) pairs into the replay buffer, alone or under DDP."""

from __future__ import annotations

import torch
from torch import nn

from expc.runtime.crl.buffer import TrajectoryBuffer
from expc.runtime.crl.envs import PointMaze
from expc.runtime.distributed import World


@torch.no_grad()
def act(
    actor: nn.Module, obs: torch.Tensor, goal: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    """A sample of the tanh-Gaussian policy, or its mode tanh(mean) without a generator."""
    mean, log_std = actor(obs, goal)
    if generator is None:
        return torch.tanh(mean)
    noise = torch.randn(mean.shape, generator=generator, device=mean.device)
    return torch.tanh(mean + log_std.exp() * noise)


@torch.no_grad()
def act_on_shard(
    actor: nn.Module,
    obs: torch.Tensor,
    goal: torch.Tensor,
    generator: torch.Generator,
    world: World,
) -> torch.Tensor:
    """Under DDP each rank runs the actor on its share of the environments, with its slice
    of the noise all ranks draw alike; the gathered actions are every environment's, the
    same as one process would sample."""
    mean, log_std = actor(world.shard(obs), world.shard(goal))
    noise = torch.randn((obs.shape[0], mean.shape[1]), generator=generator, device=mean.device)
    return world.gather(torch.tanh(mean + log_std.exp() * world.shard(noise)))


def collect(
    actor: nn.Module,
    env: PointMaze,
    buffer: TrajectoryBuffer,
    steps: int,
    generator: torch.Generator,
    world: World | None = None,
) -> None:
    """Step every environment `steps` times with the stochastic actor, storing (s, a).
    Under DDP the actor runs sharded over the ranks; the point-mass physics and the replay
    buffer are replicated (cheap), so every rank samples the same global batch."""
    for _ in range(steps):
        obs, goal = env.obs(), env.goal
        if world is None:
            action = act(actor, obs, goal, generator)
        else:
            action = act_on_shard(actor, obs, goal, generator, world)
        buffer.add(obs, action, env.episode_id)
        env.step(action)
