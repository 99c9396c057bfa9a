"""Goal-conditioned point-mass mazes, batched in PyTorch (no simulator).

A point mass moves in a grid maze of unit cells; walls are whole cells. The state is
`[x, y, vx, vy]` in cell units, the goal is the position part `[x, y]` (`GOAL_SLICE`), and an
action in [-1, 1]^2 accelerates the mass. Every environment of a batch steps in lockstep and
resets itself when its episode reaches `episode_length` (time-limit truncation, as in the
paper's Brax wrappers; there is no early termination).

Walls are exact: a step moves along x, then along y, and a move that would enter a wall cell
stops at the edge of the current cell, with that velocity component zeroed. Because a step
never moves more than `max_speed < 1` cell along an axis, it can only reach a neighbouring
cell, so this check is enough to keep the mass out of every wall (no tunnelling, no corner
cutting).

Success follows the paper (envs/ant.py): a step succeeds when the position is within
`success_radius` of the goal; "time at goal" is the number of successful steps in an episode.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import networkx as nx
import torch

GOAL_SLICE = slice(0, 2)
"""Where the goal lives in an observation: the paper's goal_start_idx:goal_end_idx."""

# Moves stop this far inside the current cell, so that floor() keeps naming the free cell.
_EDGE_EPS = 1e-4


@dataclass(frozen=True)
class MazeLayout:
    """A maze as text rows: `#` wall, `.` free, `S` the start cell (exactly one).

    Row r, column c is the cell [c, c + 1) x [r, r + 1) in (x, y) coordinates.
    """

    name: str
    rows: tuple[str, ...]

    def __post_init__(self) -> None:
        if len({len(r) for r in self.rows}) != 1:
            raise ValueError(f"maze {self.name!r}: rows have different lengths")
        if "".join(self.rows).count("S") != 1:
            raise ValueError(f"maze {self.name!r} needs exactly one start cell 'S'")
        if set("".join(self.rows)) - set("#.S"):
            raise ValueError(f"maze {self.name!r}: only '#', '.' and 'S' are allowed")
        border = self.rows[0] + self.rows[-1] + "".join(r[0] + r[-1] for r in self.rows)
        if set(border) != {"#"}:
            raise ValueError(f"maze {self.name!r} must be enclosed by walls")

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.rows), len(self.rows[0])

    @property
    def start(self) -> tuple[int, int]:
        flat = "".join(self.rows).index("S")
        return divmod(flat, self.shape[1])

    def walls(self) -> torch.Tensor:
        """Bool [rows, cols]: True where the cell is a wall."""
        return torch.tensor([[ch == "#" for ch in row] for row in self.rows])

    def _graph(self) -> nx.Graph:
        free = [(r, c) for r, row in enumerate(self.rows) for c, ch in enumerate(row) if ch != "#"]
        return nx.grid_2d_graph(*self.shape).subgraph(free)

    def reachable_cells(self) -> list[tuple[int, int]]:
        """Free cells connected to the start through free cells (4-neighbourhood), sorted."""
        return sorted(nx.node_connected_component(self._graph(), self.start))

    def detour_cells(self) -> list[tuple[int, int]]:
        """Reachable cells farther from the start by maze path than by Manhattan distance:
        every path to them moves away from them at some point, so heading straight for
        the goal (and sliding along walls) cannot reach them. Sorted."""
        steps = nx.single_source_shortest_path_length(self._graph(), self.start)
        r0, c0 = self.start
        return sorted(
            cell for cell, n in steps.items() if n > abs(cell[0] - r0) + abs(cell[1] - c0)
        )


U_MAZE = MazeLayout(
    "u_maze",
    (
        "#####",
        "#S..#",
        "###.#",
        "#...#",
        "#####",
    ),
)
"""The U-maze of the paper's Ant U-Maze: the straight line from the top arm to the bottom
arm crosses the middle wall, so the mass must go around it."""

BIG_MAZE = MazeLayout(
    "big_maze",
    (
        "########",
        "#S.##..#",
        "#..#...#",
        "##...###",
        "#..#...#",
        "#.#..#.#",
        "#...#..#",
        "########",
    ),
)
"""An 8 x 8 maze with 26 free cells and dead ends; its farthest cell is 11 cells from the
start (the shape of the paper's Ant Big Maze)."""

LAYOUTS: dict[str, MazeLayout] = {m.name: m for m in (U_MAZE, BIG_MAZE)}


@dataclass
class Step:
    """What one batched step returns. `obs` is already the next episode's first
    observation where `done` is set; `success` and `distance` describe the state the
    action led to, before any reset."""

    obs: torch.Tensor  # [E, 4]
    goal: torch.Tensor  # [E, 2]
    success: torch.Tensor  # [E] bool
    distance: torch.Tensor  # [E]
    done: torch.Tensor  # [E] bool: the episode hit its time limit and was reset


class PointMaze:
    """`num_envs` point masses in one maze, each chasing its own goal.

    Args:
        layout: the maze.
        num_envs: environments stepped together.
        episode_length: steps per episode before an automatic reset.
        seed: seeds this environment's own generator (starts, goals): same seed, same run.
        success_radius: distance to the goal (in cells) that counts as reaching it.
        max_speed: per-axis speed limit in cells per step (< 1: see the module docstring).
        accel: velocity change per step at full action.
        damping: velocity kept from one step to the next (friction).
        start_noise: the start is the start cell's centre plus uniform noise of this size.
    """

    obs_dim = 4
    goal_dim = 2
    action_dim = 2

    def __init__(
        self,
        layout: MazeLayout,
        num_envs: int,
        episode_length: int,
        seed: int,
        success_radius: float = 0.25,
        max_speed: float = 0.4,
        accel: float = 0.15,
        damping: float = 0.7,
        start_noise: float = 0.25,
        device: str | torch.device = "cpu",
    ):
        if not 0 < max_speed < 1:
            raise ValueError("max_speed must be in (0, 1) cells per step, or walls can be skipped")
        self.layout = layout
        self.num_envs = num_envs
        self.episode_length = episode_length
        self.success_radius = success_radius
        self.max_speed = max_speed
        self.accel = accel
        self.damping = damping
        self.start_noise = start_noise
        self.device = torch.device(device)
        self.generator = torch.Generator(self.device).manual_seed(seed)
        self.walls = layout.walls().to(self.device)
        start_r, start_c = layout.start
        self.start_center = torch.tensor([start_c + 0.5, start_r + 0.5], device=self.device)
        # Goals: any reachable free cell but the start one, so every goal needs a move.
        cells = [rc for rc in layout.reachable_cells() if rc != layout.start]
        self.goal_cells = torch.tensor([[c, r] for r, c in cells], device=self.device).float()
        self.detour_cells = torch.zeros_like(self.walls)
        for r, c in layout.detour_cells():
            self.detour_cells[r, c] = True
        e = num_envs
        self.pos = torch.zeros(e, 2, device=self.device)
        self.vel = torch.zeros(e, 2, device=self.device)
        self.goal = torch.zeros(e, 2, device=self.device)
        self.t = torch.zeros(e, dtype=torch.long, device=self.device)
        # A per-environment episode counter: the replay buffer keeps goals inside an episode.
        self.episode_id = torch.full((e,), -1, dtype=torch.long, device=self.device)
        self.reset()

    # --- state -------------------------------------------------------------------------
    def obs(self) -> torch.Tensor:
        return torch.cat([self.pos, self.vel], dim=1)

    def is_wall(self, pos: torch.Tensor) -> torch.Tensor:
        """Bool per row of `pos` [N, 2]: does the point lie in a wall cell?"""
        rows, cols = self.walls.shape
        c = pos[:, 0].floor().long().clamp(0, cols - 1)
        r = pos[:, 1].floor().long().clamp(0, rows - 1)
        return self.walls[r, c]

    def needs_detour(self, pos: torch.Tensor) -> torch.Tensor:
        """Bool per row of `pos` [N, 2]: is its cell one of the layout's detour cells?"""
        rows, cols = self.detour_cells.shape
        c = pos[:, 0].floor().long().clamp(0, cols - 1)
        r = pos[:, 1].floor().long().clamp(0, rows - 1)
        return self.detour_cells[r, c]

    def _rand(self, *shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=self.generator, device=self.device)

    def reset(self, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Start new episodes (all, or where `mask` is set); return the observations."""
        if mask is None:
            mask = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        n = int(mask.sum())
        if n:
            noise = (self._rand(n, 2) * 2 - 1) * self.start_noise
            self.pos[mask] = self.start_center + noise
            self.vel[mask] = 0.0
            pick = torch.randint(
                len(self.goal_cells), (n,), generator=self.generator, device=self.device
            )
            self.goal[mask] = self.goal_cells[pick] + self._rand(n, 2)
            self.t[mask] = 0
            self.episode_id[mask] += 1
        return self.obs()

    # --- dynamics ----------------------------------------------------------------------
    def _move_axis(self, delta: torch.Tensor, axis: int) -> torch.Tensor:
        """Move every point by `delta` along `axis`, stopping at walls; True where blocked."""
        new = self.pos.clone()
        new[:, axis] += delta
        blocked = self.is_wall(new)
        cell = self.pos[:, axis].floor()
        edge = torch.where(delta > 0, cell + 1 - _EDGE_EPS, cell + _EDGE_EPS)
        new[:, axis] = torch.where(blocked, edge, new[:, axis])
        self.pos = new
        return blocked

    def step(self, action: torch.Tensor) -> Step:
        a = action.to(self.device, torch.float32).clamp(-1.0, 1.0)
        vel = (self.damping * self.vel + self.accel * a).clamp(-self.max_speed, self.max_speed)
        for axis in (0, 1):
            blocked = self._move_axis(vel[:, axis], axis)
            vel[:, axis] = torch.where(blocked, torch.zeros_like(vel[:, axis]), vel[:, axis])
        self.vel = vel
        self.t += 1
        distance = torch.linalg.vector_norm(self.pos - self.goal, dim=1)
        success = distance < self.success_radius
        done = self.t >= self.episode_length
        if done.any():
            self.reset(done)
        return Step(self.obs(), self.goal.clone(), success, distance, done)

    # --- checkpoints -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "pos": self.pos.clone(),
            "vel": self.vel.clone(),
            "goal": self.goal.clone(),
            "t": self.t.clone(),
            "episode_id": self.episode_id.clone(),
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("pos", "vel", "goal", "t", "episode_id"):
            setattr(self, key, state[key].to(self.device).clone())
        self.generator.set_state(state["generator"])


def make_maze(task: str, num_envs: int, episode_length: int, seed: int, **kwargs: Any) -> PointMaze:
    """A `PointMaze` on a named layout (`u_maze`, `big_maze`)."""
    if task not in LAYOUTS:
        raise ValueError(f"unknown maze {task!r}; choose one of {', '.join(sorted(LAYOUTS))}")
    return PointMaze(LAYOUTS[task], num_envs, episode_length, seed, **kwargs)


Policy = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""(observation [E, obs_dim], goal [E, goal_dim]) -> action [E, action_dim]."""


@torch.no_grad()
def evaluate(env: PointMaze, policy: Policy, seed: int) -> dict[str, float]:
    """Run one full episode in every environment of `env` and score it as the paper does.

    The environment's generator is reseeded with `seed` first, so every evaluation (of every
    run that uses the same seed) faces the same starts and goals.

    Returns the means over environments of: `success_rate` (the goal was reached at some
    step: the evaluator's `episode_success_any`), `time_at_goal` (steps spent within the
    success radius, out of `env.episode_length`) and `final_distance` to the goal; and
    `detour_success_rate`, the success rate on goals in the layout's detour cells (NaN when
    there are none): a policy that heads straight for the goal fails those.
    """
    env.generator.manual_seed(seed)
    obs = env.reset()
    goal = env.goal.clone()
    detour = env.needs_detour(goal)
    time_at_goal = torch.zeros(env.num_envs, device=env.device)
    reached = torch.zeros(env.num_envs, dtype=torch.bool, device=env.device)
    distance = torch.zeros(env.num_envs, device=env.device)
    for _ in range(env.episode_length):
        step = env.step(policy(obs, goal))
        time_at_goal += step.success
        reached |= step.success
        distance = step.distance
        obs, goal = step.obs, step.goal
    return {
        "success_rate": reached.float().mean().item(),
        "time_at_goal": time_at_goal.mean().item(),
        "final_distance": distance.mean().item(),
        "detour_success_rate": reached[detour].float().mean().item()
        if detour.any()
        else float("nan"),
    }
