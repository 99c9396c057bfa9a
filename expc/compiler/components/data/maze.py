"""`data maze { ... }`: batched goal-conditioned point-mass mazes; yields environments."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from expc.compiler.components.base import DataSource
from expc.compiler.ir import STRUCTURAL, Node


class MazeData(Node):
    """`data maze { ... }`: batched point-mass mazes (expc.runtime.crl.envs).

    task: `u_maze` (5 x 5, the straight line to the far arm is walled off) or `big_maze`
    (8 x 8, dead ends). The state is [x, y, vx, vy], the goal is [x, y], actions are
    accelerations in [-1, 1]^2. Every episode lasts `episode_length` steps; a step is a
    success within `success_radius` cells of the goal. `num_envs` environments collect
    training data together; `eval_envs` run one evaluation episode each.
    """

    kind: Literal["maze"] = Field("maze", json_schema_extra=STRUCTURAL)
    task: Literal["u_maze", "big_maze"] = Field("u_maze", json_schema_extra=STRUCTURAL)
    episode_length: Annotated[int, Field(ge=2, le=100_000)] = 100
    success_radius: Annotated[float, Field(gt=0.0, le=4.0)] = 0.25
    num_envs: Annotated[int, Field(ge=1, le=65536)] = 256
    eval_envs: Annotated[int, Field(ge=1, le=65536)] = 128


DATA = DataSource(
    kinds=("maze",),
    node=MazeData,
    yields=frozenset({"environments"}),
    variable_structure=frozenset({("data", "task")}),
)
