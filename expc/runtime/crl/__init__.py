"""Contrastive goal-conditioned RL (the "1000 Layer Networks" reproduction): batched
point-mass mazes, a trajectory replay buffer with geometric future-goal sampling, and the
CRL critic/actor/temperature losses. Generated code for `specs/crl_depth.exp` imports these.
"""

from expc.runtime.crl.buffer import CRLBatch, TrajectoryBuffer
from expc.runtime.crl.ensemble import ensemble_update
from expc.runtime.crl.envs import (
    BIG_MAZE,
    GOAL_SLICE,
    LAYOUTS,
    U_MAZE,
    MazeLayout,
    PointMaze,
    Step,
    evaluate,
    make_maze,
)
from expc.runtime.crl.losses import (
    actor_loss,
    alpha_loss,
    categorical_accuracy,
    critic_loss,
    energy,
    q_value,
    squash_log_std,
    tanh_gaussian_sample,
    target_entropy,
)
from expc.runtime.crl.rollout import act, act_on_shard, collect

__all__ = [
    "act",
    "act_on_shard",
    "collect",
    "ensemble_update",
    "BIG_MAZE",
    "GOAL_SLICE",
    "LAYOUTS",
    "U_MAZE",
    "CRLBatch",
    "MazeLayout",
    "PointMaze",
    "Step",
    "TrajectoryBuffer",
    "actor_loss",
    "alpha_loss",
    "categorical_accuracy",
    "critic_loss",
    "energy",
    "evaluate",
    "make_maze",
    "q_value",
    "squash_log_std",
    "tanh_gaussian_sample",
    "target_entropy",
]
