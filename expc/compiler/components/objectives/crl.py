"""`objective crl`: self-supervised goal-conditioned RL with residual MLPs, the
"1000 Layer Networks for Self-Supervised RL" reproduction (issue: depth-scaling CRL).

Specs select it with `objective crl { ... }`. The environments, replay buffer and losses
live in `expc.runtime.crl`; the generated code holds the networks and the training loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import Field

from expc.compiler import ir
from expc.compiler.components.base import Objective, TargetSupport
from expc.compiler.diagnostics import Diagnostic
from expc.compiler.ir import STRUCTURAL, Node

# --- data: the environment ---------------------------------------------------------------


# --- model -------------------------------------------------------------------------------


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
    The replay buffer keeps the last `replay_capacity` steps of every environment. Adam with
    a constant learning rate: `lr` for actor, critic and temperature alike, unless
    `actor_lr`, `critic_lr` or `alpha_lr` sets one of them (0: `lr`), as the official code's
    three learning rates do. Evaluation every `eval_every`
    gradient steps; checkpoints every `checkpoint_every` (0 = at every evaluation).
    """

    steps: Annotated[int, Field(ge=1, le=10**9)] = 2000
    batch_size: Annotated[int, Field(ge=2, le=65536)] = 256
    lr: Annotated[float, Field(gt=0.0, le=10.0)] = 3e-4
    actor_lr: Annotated[float, Field(ge=0.0, le=10.0)] = 0.0
    critic_lr: Annotated[float, Field(ge=0.0, le=10.0)] = 0.0
    alpha_lr: Annotated[float, Field(ge=0.0, le=10.0)] = 0.0
    unroll_length: Annotated[int, Field(ge=1, le=100_000)] = 10
    updates_per_unroll: Annotated[int, Field(ge=1, le=100_000)] = 10
    prefill: Annotated[int, Field(ge=1, le=10**7)] = 100
    replay_capacity: Annotated[int, Field(ge=2, le=10**7)] = 1000
    eval_every: Annotated[int, Field(ge=1, le=10**9)] = 500
    checkpoint_every: Annotated[int, Field(ge=0, le=10**9)] = 0


# --- metrics -----------------------------------------------------------------------------

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


# --- cross-field rules -------------------------------------------------------------------


def _replay_holds_the_prefill(config: Any) -> Iterator[Diagnostic]:
    train = config.train
    if train.prefill > train.replay_capacity:
        yield Diagnostic(
            f"`train.prefill` ({train.prefill}) exceeds `train.replay_capacity` "
            f"({train.replay_capacity}): the buffer would drop data before training starts",
            train.span_of("prefill"),
            help=f"use a prefill of at most {train.replay_capacity}",
        )


OBJECTIVE = Objective(
    kind="crl",
    node=CRLObjective,
    needs="vector_encoder",
    consumes="environments",
    sections={"train": CRLTrain},
    metrics=METRIC_HELP,
    default_metrics=(
        "success_rate",
        "time_at_goal",
        "critic_loss",
        "categorical_accuracy",
        "env_steps_per_s",
    ),
    templates={"train.py": "objectives/crl.py.j2"},
    # bf16 autocast around the networks' forward passes in the gradient step; torch.compile
    # of the actor and both encoders in place (the same state dict). DDP: each rank runs
    # the actor on its share of the environments (the physics and the replay buffer stay
    # replicated, so buffers are identical) and trains on its rows of each batch,
    # contrasting them against every rank's goals.
    target=TargetSupport(
        precision=("fp32", "bf16", "fp16"),
        compile=(False, True),
        strategy=("single", "ddp"),
        ddp_batch=(("train", "batch_size"), ("data", "num_envs")),
        variable=frozenset({"precision", "compile"}),
        ensemble=True,
    ),
    # Members share the networks and the batch size; each has its own environments,
    # replay buffer, generator, optimisers and evaluation, so the rest may differ.
    ensemble_fields=(
        "seed",
        "data",
        "objective",
        "train.steps",
        "train.lr",
        "train.actor_lr",
        "train.critic_lr",
        "train.alpha_lr",
        "train.unroll_length",
        "train.updates_per_unroll",
        "train.prefill",
        "train.replay_capacity",
        "train.eval_every",
        "train.checkpoint_every",
    ),
    run_rules=(_replay_holds_the_prefill,),
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
