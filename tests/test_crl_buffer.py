"""The trajectory replay buffer: storage order, ring wrap-around, and the paper's
geometric future-goal sampling inside episode boundaries."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from expc.runtime.crl import GOAL_SLICE, PointMaze, TrajectoryBuffer, make_maze
from expc.runtime.crl.buffer import SELF_WEIGHT


def filled_buffer(
    episode_ids: np.ndarray, gamma: float, horizon: int, capacity: int | None = None
) -> TrajectoryBuffer:
    """A buffer whose observation at (time t, env e) is [t, e, 100 t + e, 0] and whose
    episode ids are the given [T, E] table, so every sample can be traced back."""
    t_len, n_env = episode_ids.shape
    buf = TrajectoryBuffer(capacity or t_len, n_env, 4, 1, slice(0, 3), gamma, horizon)
    for t in range(t_len):
        e = torch.arange(n_env, dtype=torch.float32)
        obs = torch.stack([torch.full_like(e, t), e, 100 * t + e, torch.zeros_like(e)], 1)
        buf.add(obs, torch.full((n_env, 1), float(t)), torch.as_tensor(episode_ids[t]))
    return buf


def expected_offset_probs(
    ids: np.ndarray, t: int, e: int, gamma: float, horizon: int
) -> np.ndarray:
    """The paper's row of `flatten_crl_fn`, in numpy: p(j) ~ gamma^(j-i) for later j of the
    same episode within the horizon, 1e-5 for j = i, normalised. Index = offset j - i."""
    w = np.zeros(horizon + 1)
    w[0] = 1e-5
    for k in range(1, horizon + 1):
        if t + k < len(ids) and ids[t + k, e] == ids[t, e]:
            w[k] = gamma**k
    return w / w.sum()


def test_offsets_follow_the_truncated_geometric_distribution() -> None:
    """Over many draws the histogram of goal offsets matches the exact per-sample
    probabilities (chi-square), episodes of several lengths included."""
    rng = np.random.default_rng(0)
    t_len, n_env, gamma, horizon = 120, 6, 0.9, 40
    # Variable-length episodes: a new id starts at random times in each environment.
    ids = np.cumsum(rng.random((t_len, n_env)) < 0.03, axis=0)
    buf = filled_buffer(ids, gamma, horizon)
    batch = buf.sample(40_000, torch.Generator().manual_seed(1))
    expected = np.zeros(horizon + 1)
    pairs, counts = np.unique(np.stack([batch.time, batch.env], 1), axis=0, return_counts=True)
    for (t, e), n in zip(pairs, counts, strict=True):
        expected += n * expected_offset_probs(ids, t, e, gamma, horizon)
    observed = np.bincount(batch.offset.numpy(), minlength=horizon + 1)
    keep = expected > 5
    chi2 = ((observed[keep] - expected[keep]) ** 2 / expected[keep]).sum()
    dof = keep.sum() - 1
    assert chi2 < dof + 6 * np.sqrt(2 * dof)  # far in the tail of chi2(dof) otherwise
    assert observed[keep].sum() > 0.99 * len(batch.offset)
    # The untruncated geometric mean offset is 1 / (1 - gamma) = 10; truncation lowers it.
    assert 5 < batch.offset.float().mean().item() < 10


def test_offset_weights_equal_the_paper_formula() -> None:
    ids = np.array([[0, 0], [0, 0], [0, 1], [1, 1], [1, 1]])
    buf = filled_buffer(ids, gamma=0.5, horizon=3)
    w = buf.offset_weights(torch.tensor([0, 0, 1, 0]), torch.tensor([0, 2, 1, 4])).numpy()
    assert np.allclose(w[0], [SELF_WEIGHT, 0.5, 0.25, 0.0])  # env 0 leaves episode 0 at t=3
    assert np.allclose(w[1], [SELF_WEIGHT, 0.0, 0.0, 0.0])  # env 0, t=2: last step of its episode
    assert np.allclose(w[2], [SELF_WEIGHT, 0.0, 0.0, 0.0])  # env 1, t=1: next id differs
    assert np.allclose(w[3], [SELF_WEIGHT, 0.0, 0.0, 0.0])  # newest row: no future stored
    long = filled_buffer(np.zeros((10, 1), dtype=int), gamma=0.5, horizon=3)
    w = long.offset_weights(torch.tensor([0]), torch.tensor([2])).numpy()[0]
    assert np.allclose(w, [SELF_WEIGHT, 0.5, 0.25, 0.125])  # cut at the horizon


def test_samples_are_traceable_and_goals_stay_in_their_episode() -> None:
    """Filled from a real maze with time-limit resets and random early resets, through a
    ring that wraps several times: the goal is always the stored observation `offset` steps
    later in the same environment and episode."""
    env = PointMaze(make_maze("u_maze", 1, 1, 0).layout, 64, episode_length=15, seed=0)
    buf = TrajectoryBuffer(50, 64, 4, 2, GOAL_SLICE, gamma=0.99, horizon=15)
    gen = torch.Generator().manual_seed(0)
    history_obs, history_ids = [], []
    for _ in range(170):
        action = torch.rand(64, 2, generator=gen) * 2 - 1
        history_obs.append(env.obs().clone())
        history_ids.append(env.episode_id.clone())
        buf.add(env.obs(), action, env.episode_id)
        env.step(action)
        env.reset(torch.rand(64, generator=gen) < 0.05)  # some episodes end early
    assert buf.size == 50
    obs = torch.stack(history_obs[-50:])  # logical rows: oldest first
    ids = torch.stack(history_ids[-50:])
    batch = buf.sample(5000, gen)
    goal_time = batch.time + batch.offset
    assert (goal_time < 50).all() and (batch.offset >= 0).all()
    assert torch.equal(batch.obs, obs[batch.time, batch.env])
    assert torch.equal(batch.goal, obs[goal_time, batch.env][:, GOAL_SLICE])
    assert torch.equal(ids[goal_time, batch.env], ids[batch.time, batch.env])
    # Offset 0 only where the episode has no stored future (weight 1e-5 otherwise).
    zero = batch.offset == 0
    last = (batch.time == 49) | (
        ids[(batch.time + 1).clamp(max=49), batch.env] != ids[batch.time, batch.env]
    )
    assert (last[zero]).float().mean() > 0.99
    assert (batch.offset[~last] > 0).float().mean() > 0.999


def test_ring_keeps_the_newest_rows_in_order() -> None:
    buf = filled_buffer(np.zeros((25, 2), dtype=int), gamma=0.9, horizon=5, capacity=10)
    assert buf.size == 10 and buf.next_row == 5
    batch = buf.sample(500, torch.Generator().manual_seed(0))
    # Row t of the logical order was written at step 15 + t.
    assert torch.equal(batch.obs[:, 0], (15 + batch.time).float())
    assert torch.equal(batch.action[:, 0], (15 + batch.time).float())
    assert torch.equal(batch.goal[:, 0], (15 + batch.time + batch.offset).float())


def test_sampling_is_seeded_and_the_state_dict_round_trips() -> None:
    ids = np.zeros((30, 3), dtype=int)
    buf = filled_buffer(ids, gamma=0.9, horizon=10)
    a = buf.sample(64, torch.Generator().manual_seed(7))
    b = buf.sample(64, torch.Generator().manual_seed(7))
    assert torch.equal(a.goal, b.goal) and torch.equal(a.offset, b.offset)
    copy = TrajectoryBuffer(30, 3, 4, 1, slice(0, 3), 0.9, 10)
    copy.load_state_dict(buf.state_dict())
    c = copy.sample(64, torch.Generator().manual_seed(7))
    assert torch.equal(a.goal, c.goal) and torch.equal(a.obs, c.obs)


def test_errors() -> None:
    with pytest.raises(ValueError, match="gamma"):
        TrajectoryBuffer(5, 1, 4, 2, GOAL_SLICE, gamma=1.5, horizon=5)
    with pytest.raises(RuntimeError, match="empty"):
        TrajectoryBuffer(5, 1, 4, 2, GOAL_SLICE, 0.9, 5).sample(1, torch.Generator())
