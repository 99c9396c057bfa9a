"""The contrastive-RL backend: self-supervised goal-conditioned RL with residual MLPs, the
"1000 Layer Networks for Self-Supervised RL" reproduction (issue: depth-scaling CRL).

Specs select it with `objective crl { ... }`. The environments, replay buffer and losses
live in `expc.runtime.crl`; the generated code holds the networks and the training loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Literal

from pydantic import Field

from expc.compiler import ir
from expc.compiler.backends import Backend, standard_sections
from expc.compiler.diagnostics import Diagnostic
from expc.compiler.ir import STRUCTURAL, Node

# --- data: the environment ---------------------------------------------------------------


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


# --- model -------------------------------------------------------------------------------


class ResidualMLP(Node):
    """`model residual_mlp { ... }`: the paper's residual MLP, used for the critic's
    encoders phi(s, a) and psi(g) and for the actor.

    Each network is Dense(width) -> norm -> activation, then `depth / block_layers`
    residual blocks, then a linear head. A block is `block_layers` x [Dense(width) -> norm
    -> activation] with a skip connection around all of them (added after the last
    activation). `depth` counts the Dense layers inside the blocks, as the paper does
    (depth 4 = one block; the input and output layers are not counted). The encoders end in
    a `representation`-wide Dense; the actor in a mean and a log-std head.
    """

    family: Literal["residual_mlp"] = Field("residual_mlp", json_schema_extra=STRUCTURAL)
    depth: Annotated[int, Field(ge=0, le=4096)] = 4
    width: Annotated[int, Field(ge=1, le=65536)] = 256
    block_layers: Annotated[int, Field(ge=1, le=64)] = 4
    representation: Annotated[int, Field(ge=1, le=65536)] = 64
    norm: Literal["layernorm", "none"] = Field("layernorm", json_schema_extra=STRUCTURAL)
    activation: Literal["swish", "relu"] = Field("swish", json_schema_extra=STRUCTURAL)
    skip: bool = Field(True, json_schema_extra=STRUCTURAL)


# --- objective ---------------------------------------------------------------------------


class CRLObjective(Node):
    """`objective crl { ... }`: contrastive RL (expc.runtime.crl.losses).

    The critic is trained with InfoNCE over the batch, the energy being the negative L2
    distance between phi(s, a) and psi(g), plus `logsumexp_penalty` x the mean squared row
    logsumexp. Goals are future states of the same trajectory, j - i steps ahead with
    probability proportional to gamma^(j - i). The actor maximises -||phi(s, pi) - psi(g)||
    with a SAC entropy bonus whose temperature is tuned towards an entropy of
    -entropy_param x action_dim.
    """

    kind: Literal["crl"] = Field("crl", json_schema_extra=STRUCTURAL)
    gamma: Annotated[float, Field(gt=0.0, le=1.0)] = 0.99
    logsumexp_penalty: Annotated[float, Field(ge=0.0, le=100.0)] = 0.1
    entropy_param: Annotated[float, Field(ge=0.0, le=100.0)] = 0.5


class CRLTrain(Node):
    """`train { ... }`: the data-collection and update schedule.

    `steps` counts gradient steps (each updates the actor and temperature, then the critic,
    on one batch). Before the first, every environment collects `prefill` steps; then every
    `updates_per_unroll` gradient steps, each environment collects `unroll_length` more.
    The replay buffer keeps the last `replay_capacity` steps of every environment. Adam,
    constant `lr`, for actor, critic and temperature alike. Evaluation every `eval_every`
    gradient steps; checkpoints every `checkpoint_every` (0 = at every evaluation).
    """

    steps: Annotated[int, Field(ge=1, le=10**9)] = 2000
    batch_size: Annotated[int, Field(ge=2, le=65536)] = 256
    lr: Annotated[float, Field(gt=0.0, le=10.0)] = 3e-4
    unroll_length: Annotated[int, Field(ge=1, le=100_000)] = 10
    updates_per_unroll: Annotated[int, Field(ge=1, le=100_000)] = 10
    prefill: Annotated[int, Field(ge=1, le=10**7)] = 100
    replay_capacity: Annotated[int, Field(ge=2, le=10**7)] = 1000
    eval_every: Annotated[int, Field(ge=1, le=10**9)] = 500
    checkpoint_every: Annotated[int, Field(ge=0, le=10**9)] = 0


# --- metrics -----------------------------------------------------------------------------

Metric = Literal[
    "success_rate",
    "detour_success_rate",
    "time_at_goal",
    "final_distance",
    "critic_loss",
    "categorical_accuracy",
    "logsumexp",
    "actor_loss",
    "alpha",
    "entropy",
    "env_steps_per_s",
]
METRIC_HELP: dict[str, str] = {
    "success_rate": "evaluation episodes that reach the goal at some step (deterministic actor)",
    "detour_success_rate": (
        "success rate on evaluation goals that need a detour (their maze distance from the "
        "start cell exceeds the Manhattan distance)"
    ),
    "time_at_goal": "steps of an evaluation episode spent within success_radius of the goal",
    "final_distance": "distance to the goal at the last step of an evaluation episode",
    "critic_loss": "InfoNCE + logsumexp penalty, mean since the previous evaluation",
    "categorical_accuracy": (
        "how often the critic ranks a state's own future goal first among the batch's goals"
    ),
    "logsumexp": "mean row logsumexp of the critic's logits",
    "actor_loss": "mean(alpha * log pi - Q) since the previous evaluation",
    "alpha": "the entropy temperature exp(log_alpha)",
    "entropy": "the policy's sampled entropy -log pi on training batches",
    "env_steps_per_s": "environment steps per second of training (collection + updates)",
}


class CRLConfig(ir.Config):
    """One run of a contrastive goal-conditioned RL experiment."""

    experiment: ir.Experiment
    data: MazeData
    model: ResidualMLP
    objective: CRLObjective
    train: CRLTrain = CRLTrain()
    target: ir.Target = ir.Target()
    metrics: tuple[Metric, ...] = Field(
        ("success_rate", "time_at_goal", "critic_loss", "categorical_accuracy", "env_steps_per_s"),
        json_schema_extra=STRUCTURAL,
    )


# --- cross-field rules -------------------------------------------------------------------


def _depth_is_whole_blocks(config: CRLConfig) -> Iterator[Diagnostic]:
    model = config.model
    if model.depth % model.block_layers:
        below = model.depth - model.depth % model.block_layers
        yield Diagnostic(
            f"`model.depth` ({model.depth}) must be a multiple of `model.block_layers` "
            f"({model.block_layers}): depth counts the Dense layers of whole residual blocks",
            model.span_of("depth"),
            help=f"use {below} or {below + model.block_layers}",
        )


def _replay_holds_the_prefill(config: CRLConfig) -> Iterator[Diagnostic]:
    train = config.train
    if train.prefill > train.replay_capacity:
        yield Diagnostic(
            f"`train.prefill` ({train.prefill}) exceeds `train.replay_capacity` "
            f"({train.replay_capacity}): the buffer would drop data before training starts",
            train.span_of("prefill"),
            help=f"use a prefill of at most {train.replay_capacity}",
        )


def _target_supported(spec: ir.Spec) -> Iterator[Diagnostic]:
    target = spec.config.target
    unsupported = {
        "precision": (target.precision != "fp32", "fp32"),
        "compile": (target.compile, "false"),
        "kernels": (target.kernels != "eager", "eager"),
        "strategy": (target.strategy != "single", "single"),
    }
    for field, (bad, fix) in unsupported.items():
        if bad:
            value = getattr(target, field)
            shown = str(value).lower() if isinstance(value, bool) else value
            yield Diagnostic(
                f"`target.{field} = {shown}` is not supported by `objective crl`",
                target.span_of(field),
                help=f"use `{field} = {fix}`",
            )


BACKEND = Backend(
    name="crl",
    objective="crl",
    config=CRLConfig,
    sections=standard_sections(
        data={"maze": MazeData},
        model={"residual_mlp": ResidualMLP},
        objective={"crl": CRLObjective},
        eval=False,
    ),
    required=("experiment", "data", "model", "objective"),
    templates=("crl/model.py.j2", "crl/train.py.j2"),
    metrics=METRIC_HELP,
    run_rules=(_depth_is_whole_blocks, _replay_holds_the_prefill),
    spec_rules=(_target_supported,),
    variable_structure=frozenset(
        {
            ("data", "task"),
            ("model", "norm"),
            ("model", "activation"),
            ("model", "skip"),
        }
    ),
    report="expc.runtime.crl.report:analyse",
    # `--smoke` without a `profile smoke`: a few envs and updates, two evaluations.
    smoke=(
        ir.Override(path=("data", "num_envs"), value=8),
        ir.Override(path=("data", "eval_envs"), value=4),
        ir.Override(path=("data", "episode_length"), value=10),
        ir.Override(path=("train", "steps"), value=4),
        ir.Override(path=("train", "batch_size"), value=16),
        ir.Override(path=("train", "prefill"), value=10),
        ir.Override(path=("train", "unroll_length"), value=5),
        ir.Override(path=("train", "updates_per_unroll"), value=2),
        ir.Override(path=("train", "eval_every"), value=2),
    ),
)
