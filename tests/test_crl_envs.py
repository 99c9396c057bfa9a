"""The batched point-mass mazes: walls, resets, reachable goals, shapes, seeds, scoring."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
import torch

from expc.runtime.crl import BIG_MAZE, U_MAZE, MazeLayout, PointMaze, evaluate, make_maze

OPEN_ROOM = MazeLayout("open_room", ("#####", "#S..#", "#...#", "#...#", "#####"))
# A free pocket (row 3, column 3) walled off from the start: no goal may land there.
POCKET = MazeLayout("pocket", ("#####", "#S..#", "#####", "#..##", "#####"))


def wall_table(layout: MazeLayout) -> np.ndarray:
    """The test's own reading of the layout: True on '#'."""
    return np.array([[ch == "#" for ch in row] for row in layout.rows])


def bfs_cells(layout: MazeLayout) -> set[tuple[int, int]]:
    """Cells reachable from 'S' by 4-neighbour moves (an independent flood fill)."""
    walls = wall_table(layout)
    start = next(
        (r, c) for r, row in enumerate(layout.rows) for c, ch in enumerate(row) if ch == "S"
    )
    seen, todo = {start}, deque([start])
    while todo:
        r, c = todo.popleft()
        for nr, nc in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
            if not walls[nr, nc] and (nr, nc) not in seen:
                seen.add((nr, nc))
                todo.append((nr, nc))
    return seen


def cells_of(pos: torch.Tensor) -> np.ndarray:
    """[N, 2] (row, col) of each (x, y) position."""
    return pos.flip(1).floor().long().numpy()


def random_free_positions(layout: MazeLayout, n: int, rng: np.random.Generator) -> torch.Tensor:
    cells = sorted(bfs_cells(layout))
    pick = rng.integers(len(cells), size=n)
    rc = np.array(cells)[pick]
    xy = np.stack([rc[:, 1], rc[:, 0]], axis=1) + rng.uniform(0.001, 0.999, size=(n, 2))
    return torch.tensor(xy, dtype=torch.float32)


@pytest.mark.parametrize("layout", [U_MAZE, BIG_MAZE], ids=lambda m: m.name)
def test_walls_are_never_entered_or_crossed(layout: MazeLayout) -> None:
    """Random starts, full-force random actions: no position ever lies in a wall, and each
    step moves to the same or a neighbouring cell through a free cell (x moves first)."""
    rng = np.random.default_rng(0)
    walls = wall_table(layout)
    env = PointMaze(layout, num_envs=1000, episode_length=10_000, seed=0)
    env.pos = random_free_positions(layout, 1000, rng)
    gen = torch.Generator().manual_seed(1)
    prev = cells_of(env.pos)
    for _ in range(300):
        action = torch.rand(1000, 2, generator=gen).mul(2).sub(1).sign()  # corners of [-1, 1]^2
        env.step(action)
        now = cells_of(env.pos)
        assert not walls[now[:, 0], now[:, 1]].any()
        assert (np.abs(now - prev) <= 1).all()
        # The x move goes first: the cell (old row, new column) must be free too.
        assert not walls[prev[:, 0], now[:, 1]].any()
        prev = now


def test_pushing_into_the_middle_wall_does_not_cross_it() -> None:
    """In the U-maze the top arm (row 1) sits above the wall row 2 at columns 1-2: pushing
    straight down (+y) for many steps leaves the mass in row 1, its y velocity zeroed."""
    rng = np.random.default_rng(2)
    env = PointMaze(U_MAZE, num_envs=500, episode_length=10_000, seed=0)
    x = rng.uniform(1.0, 3.0, size=500)  # columns 1 and 2
    y = rng.uniform(1.0, 2.0, size=500)
    env.pos = torch.tensor(np.stack([x, y], axis=1), dtype=torch.float32)
    for _ in range(100):
        env.step(torch.tensor([[0.0, 1.0]]).expand(500, 2))
        assert (env.pos[:, 1] < 2.0).all()
    assert torch.allclose(env.pos[:, 1], torch.full((500,), 2.0), atol=1e-3)  # resting on the wall
    assert (env.vel[:, 1] == 0).all()
    assert torch.allclose(env.pos[:, 0], torch.tensor(x, dtype=torch.float32))  # x untouched


def test_free_motion_follows_the_damped_dynamics() -> None:
    """Away from walls, v' = clip(damping * v + accel * a) and p' = p + v'."""
    env = PointMaze(OPEN_ROOM, num_envs=1, episode_length=100, seed=0, accel=0.1, damping=0.5)
    env.pos = torch.tensor([[2.5, 2.5]])
    env.vel = torch.tensor([[0.1, -0.2]])
    env.step(torch.tensor([[1.0, 0.5]]))
    assert torch.allclose(env.vel, torch.tensor([[0.15, -0.05]]))
    assert torch.allclose(env.pos, torch.tensor([[2.65, 2.45]]))
    env.step(torch.tensor([[5.0, -5.0]]))  # actions are clipped to [-1, 1]
    assert torch.allclose(env.vel, torch.tensor([[0.175, -0.125]]))


def test_straight_line_to_far_arm_goals_is_blocked() -> None:
    """The U-maze needs a detour: the segment from the start centre to any goal in the
    bottom-left arm passes through a wall cell."""
    walls = wall_table(U_MAZE)
    start = np.array([1.5, 1.5])
    for goal in ([1.5, 3.5], [1.2, 3.1], [2.5, 3.5], [2.9, 3.9]):
        points = start + np.linspace(0, 1, 200)[:, None] * (np.array(goal) - start)
        cells = np.floor(points[:, ::-1]).astype(int)
        assert walls[cells[:, 0], cells[:, 1]].any()


@pytest.mark.parametrize("layout", [U_MAZE, BIG_MAZE, POCKET], ids=lambda m: m.name)
def test_goals_are_reachable_and_cover_the_maze(layout: MazeLayout) -> None:
    env = PointMaze(layout, num_envs=4000, episode_length=10, seed=3)
    reachable = bfs_cells(layout) - {layout.start}
    goal_cells = {tuple(rc) for rc in cells_of(env.goal)}
    assert goal_cells == reachable  # every goal reachable; every reachable cell (but S) used
    assert not wall_table(layout)[cells_of(env.goal)[:, 0], cells_of(env.goal)[:, 1]].any()
    # Uniform over cells: each of the n cells gets about 1/n of the goals.
    counts = np.bincount([sorted(reachable).index(tuple(rc)) for rc in cells_of(env.goal)])
    assert counts.min() > 0.7 * 4000 / len(reachable)


def test_layout_reachable_cells_skip_the_pocket() -> None:
    assert set(POCKET.reachable_cells()) == {(1, 1), (1, 2), (1, 3)}
    assert set(BIG_MAZE.reachable_cells()) == bfs_cells(BIG_MAZE)
    assert len(BIG_MAZE.reachable_cells()) == 26


def test_episodes_reset_at_the_time_limit() -> None:
    env = PointMaze(U_MAZE, num_envs=64, episode_length=5, seed=0, start_noise=0.25)
    first_goal = env.goal.clone()
    for t in range(5):
        step = env.step(torch.ones(64, 2))
        assert step.done.all() == (t == 4)
        assert not step.done.any() or t == 4
    assert (env.t == 0).all() and (env.episode_id == 1).all()
    assert (env.vel == 0).all()
    assert ((env.pos - torch.tensor([1.5, 1.5])).abs() <= 0.25).all()  # back in the start cell
    assert torch.equal(step.obs, env.obs()) and torch.equal(step.goal, env.goal)
    assert not torch.equal(env.goal, first_goal)  # fresh goals


def test_partial_reset_touches_only_masked_envs() -> None:
    env = PointMaze(U_MAZE, num_envs=8, episode_length=100, seed=0)
    for _ in range(3):
        env.step(torch.ones(8, 2))
    before = env.obs().clone(), env.goal.clone()
    mask = torch.tensor([True, False] * 4)
    env.reset(mask)
    assert torch.equal(env.obs()[~mask], before[0][~mask])
    assert torch.equal(env.goal[~mask], before[1][~mask])
    assert (env.t[mask] == 0).all() and (env.t[~mask] == 3).all()
    assert env.episode_id.tolist() == [1, 0] * 4


def test_batched_shapes_and_types() -> None:
    env = make_maze("big_maze", num_envs=300, episode_length=20, seed=0)
    assert env.obs().shape == (300, 4) and env.goal.shape == (300, 2)
    step = env.step(torch.zeros(300, 2))
    assert step.obs.shape == (300, 4) and step.goal.shape == (300, 2)
    assert step.success.shape == step.done.shape == step.distance.shape == (300,)
    assert step.success.dtype == step.done.dtype == torch.bool
    assert step.obs.dtype == torch.float32
    with pytest.raises(ValueError, match="unknown maze"):
        make_maze("u_mazee", 1, 1, 0)


def test_same_seed_same_trajectories() -> None:
    def rollout(seed: int) -> torch.Tensor:
        env = make_maze("u_maze", num_envs=32, episode_length=7, seed=seed)
        actions = torch.Generator().manual_seed(99)
        out = [env.obs()]
        for _ in range(20):  # crosses two resets
            out.append(env.step(torch.rand(32, 2, generator=actions) * 2 - 1).obs)
        return torch.cat([torch.stack(out), env.goal.repeat(1, 2)[None]])

    assert torch.equal(rollout(5), rollout(5))
    assert not torch.equal(rollout(5), rollout(6))


def test_state_dict_round_trip_continues_identically() -> None:
    env = make_maze("u_maze", num_envs=16, episode_length=4, seed=1)
    env.step(torch.ones(16, 2))
    saved = env.state_dict()
    a = [env.step(torch.full((16, 2), -0.5)).obs for _ in range(6)]
    env.load_state_dict(saved)
    b = [env.step(torch.full((16, 2), -0.5)).obs for _ in range(6)]
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_success_is_a_distance_threshold() -> None:
    env = PointMaze(OPEN_ROOM, num_envs=3, episode_length=100, seed=0, success_radius=0.25)
    env.pos = torch.tensor([[2.0, 2.0], [2.0, 2.0], [2.0, 2.0]])
    env.goal = torch.tensor([[2.0, 2.24], [2.0, 2.26], [2.2, 2.0]])
    step = env.step(torch.zeros(3, 2))
    assert step.success.tolist() == [True, False, True]
    assert torch.allclose(step.distance, torch.tensor([0.24, 0.26, 0.2]))


def go_to_goal(obs: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
    """A hand-written controller: accelerate towards the goal, brake with the velocity."""
    return (3.0 * (goal - obs[:, :2]) - 4.0 * obs[:, 2:]).clamp(-1, 1)


def test_evaluate_scores_time_at_goal_and_success() -> None:
    env = PointMaze(OPEN_ROOM, num_envs=50, episode_length=60, seed=0)
    scores = evaluate(env, go_to_goal, seed=11)
    # Recount by hand on a fresh environment with the same evaluation seed.
    check = PointMaze(OPEN_ROOM, num_envs=50, episode_length=60, seed=123)
    check.generator.manual_seed(11)
    obs, goal = check.reset(), check.goal.clone()
    steps_at_goal = torch.zeros(50)
    for _ in range(60):
        step = check.step(go_to_goal(obs, goal))
        steps_at_goal += step.success
        obs, goal = step.obs, step.goal
    assert scores["time_at_goal"] == pytest.approx(steps_at_goal.mean().item())
    assert scores["success_rate"] == pytest.approx((steps_at_goal > 0).float().mean().item())
    assert scores["success_rate"] == 1.0  # an open room is easy for the controller
    assert 20 < scores["time_at_goal"] < 60
    assert np.isnan(scores.pop("detour_success_rate"))  # an open room needs no detours
    # The same seed gives the same score; doing nothing never succeeds.
    again = evaluate(env, go_to_goal, seed=11)
    again.pop("detour_success_rate")
    assert again == scores
    idle = evaluate(env, lambda o, g: torch.zeros(len(o), 2), seed=11)
    assert idle["success_rate"] == 0.0 and idle["time_at_goal"] == 0.0


def test_greedy_controller_fails_in_the_u_maze() -> None:
    """Heading straight for the goal gets stuck behind the middle wall for far-arm goals,
    so the U-maze cannot be solved without learning to go around: the detour goals fail."""
    open_room = evaluate(PointMaze(OPEN_ROOM, 200, 100, seed=0), go_to_goal, seed=1)
    u_maze = evaluate(PointMaze(U_MAZE, 200, 100, seed=0), go_to_goal, seed=1)
    assert open_room["success_rate"] == 1.0
    assert 0.2 < u_maze["success_rate"] < 0.9
    assert u_maze["detour_success_rate"] < 0.1


def bfs_steps(layout: MazeLayout) -> dict[tuple[int, int], int]:
    """Moves from 'S' to every reachable cell (the test's own breadth-first search)."""
    walls = wall_table(layout)
    start = layout.start
    steps, todo = {start: 0}, deque([start])
    while todo:
        r, c = todo.popleft()
        for nr, nc in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
            if not walls[nr, nc] and (nr, nc) not in steps:
                steps[(nr, nc)] = steps[(r, c)] + 1
                todo.append((nr, nc))
    return steps


def test_detour_cells() -> None:
    assert U_MAZE.detour_cells() == [(3, 1), (3, 2)]  # the bottom arm, behind the wall
    assert OPEN_ROOM.detour_cells() == []
    r0, c0 = BIG_MAZE.start
    expected = sorted(
        cell for cell, n in bfs_steps(BIG_MAZE).items() if n > abs(cell[0] - r0) + abs(cell[1] - c0)
    )
    assert BIG_MAZE.detour_cells() == expected and len(expected) > 5
    env = PointMaze(U_MAZE, num_envs=1, episode_length=10, seed=0)
    points = torch.tensor([[1.5, 3.5], [2.9, 3.1], [3.5, 3.5], [1.5, 1.5]])
    assert env.needs_detour(points).tolist() == [True, True, False, False]


def test_layout_validation() -> None:
    with pytest.raises(ValueError, match="exactly one start"):
        MazeLayout("x", ("###", "#.#", "###"))
    with pytest.raises(ValueError, match="enclosed"):
        MazeLayout("x", ("#.#", "#S#", "###"))
    with pytest.raises(ValueError, match="max_speed"):
        PointMaze(U_MAZE, 1, 1, 0, max_speed=1.5)
