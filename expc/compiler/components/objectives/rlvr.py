"""`objective rlvr`: does RL with verifiable rewards expand what a model can solve, or only
sharpen its sampling? (Yue et al., "Does Reinforcement Learning Really Incentivize Reasoning
Capacity in LLMs Beyond the Base Model?")

A transformer is pretrained on (noisy) worked solutions of generated arithmetic problems, the
base model; GRPO then trains it on the verifier's reward, the RL model. Both are sampled n times
per held-out problem and compared by pass@k for k = 1, 2, 4, ..., n.

Specs select it with `objective rlvr { ... }`; the two stages are `train { pretrain { ... }
rl { ... } }`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import Field

from expc.compiler import ir
from expc.compiler.components.base import Objective, TargetSupport
from expc.compiler.diagnostics import Diagnostic
from expc.compiler.ir import STRUCTURAL, Node

# --- data --------------------------------------------------------------------------------


# --- objective ---------------------------------------------------------------------------


class RLVRObjective(Node):
    """`objective rlvr { ... }`: GRPO with the verifier's 0/1 reward (the RL stage's loss).

    For each problem, `group_size` completions are sampled at `temperature` / `top_p`; each
    one's advantage is its reward normalised within the group. The loss is PPO's clipped
    ratio objective (`clip` = epsilon), averaged over each completion's tokens, minus `kl`
    times the k3 estimate of KL(policy || base); `kl = 0` (the paper's setting) drops the
    base model from the step.
    """

    kind: Literal["rlvr"] = Field("rlvr", json_schema_extra=STRUCTURAL)
    group_size: Annotated[int, Field(ge=2, le=4096)] = 8
    clip: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.2
    kl: Annotated[float, Field(ge=0.0, le=100.0)] = 0.0
    temperature: Annotated[float, Field(gt=0.0, le=10.0)] = 1.0
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0


# --- train: the two stages ---------------------------------------------------------------


class Pretrain(Node):
    """`pretrain { ... }` in `train`: stage 1, the base model. Next-token cross-entropy on the
    completions of demonstrations (the prompt is context, not a target), `batch_size`
    problems per step, linear warmup then cosine decay of `lr`. A metrics row every
    `eval_every` steps."""

    steps: Annotated[int, Field(ge=1, le=10**9)] = 2000
    batch_size: Annotated[int, Field(ge=1, le=65536)] = 64
    lr: Annotated[float, Field(gt=0.0, le=10.0)] = 3e-3
    warmup: Annotated[int, Field(ge=0, le=10**9)] = 50
    eval_every: Annotated[int, Field(ge=1, le=10**9)] = 250


class RLStage(Node):
    """`rl { ... }` in `train`: stage 2, GRPO from the stage-1 checkpoint. Each step samples
    `prompts` training problems and takes `updates` optimiser steps on their rollouts (1 =
    on-policy, the ratio starts at 1); constant `lr`. A metrics row every `eval_every`
    steps."""

    steps: Annotated[int, Field(ge=0, le=10**9)] = 200
    prompts: Annotated[int, Field(ge=1, le=65536)] = 32
    lr: Annotated[float, Field(gt=0.0, le=10.0)] = 1e-4
    updates: Annotated[int, Field(ge=1, le=64)] = 1
    eval_every: Annotated[int, Field(ge=1, le=10**9)] = 50


class Train(Node):
    """`train { pretrain { ... } rl { ... } ... }`: both stages use AdamW with these settings.

    Each metrics row (every stage's `eval_every` steps, and at the end of each stage) also
    measures pass@1 on the held-out problems when `metrics` asks for it.
    `checkpoint_every`: checkpoint every N steps of either stage (0 = at every row);
    `--resume` continues from it.
    """

    pretrain: Pretrain = Pretrain()
    rl: RLStage = RLStage()
    weight_decay: Annotated[float, Field(ge=0.0, le=10.0)] = 0.0
    beta1: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.9
    beta2: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.98
    min_lr_ratio: Annotated[float, Field(ge=0.0, le=1.0)] = 0.1
    grad_clip: Annotated[float, Field(ge=0.0)] = 1.0
    checkpoint_every: Annotated[int, Field(ge=0, le=10**9)] = 0


# --- eval: pass@k ------------------------------------------------------------------------


class PassAtK(Node):
    """`eval { ... }`: pass@k of the base (end of stage 1) and RL (end of stage 2) models.

    `samples` completions (n) of each of `problems` held-out problems, sampled at
    `temperature` / `top_p` (the paper: 0.6 / 0.95, the same for both models); pass@k with the
    unbiased estimator for k = 1, 2, 4, ..., n. During training, pass@1 is tracked on the
    same problems from `track_samples` samples each. `batch_size`: rows per sampling call.
    """

    problems: Annotated[int, Field(ge=1, le=100_000)] = 100
    samples: Annotated[int, Field(ge=1, le=65536)] = 256
    temperature: Annotated[float, Field(gt=0.0, le=10.0)] = 0.6
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] = 0.95
    track_samples: Annotated[int, Field(ge=1, le=65536)] = 16
    batch_size: Annotated[int, Field(ge=1, le=1_000_000)] = 1024


# --- metrics -----------------------------------------------------------------------------

METRIC_HELP: dict[str, str] = {
    "train_loss": "stage 1: mean next-token loss on demonstration completions since the last row",
    "pass_at_1": "share of correct samples on the held-out problems (eval.track_samples each)",
    "reward": "stage 2: mean verifier reward of the rollouts since the last row",
    "kl": "stage 2: mean per-token k3 KL(policy || base) of the last update (0 when kl = 0)",
    "clip_fraction": "stage 2: share of completion tokens whose ratio was clipped",
    "completion_length": "stage 2: mean rollout length in tokens, stop token included",
}


# --- cross-field rules -------------------------------------------------------------------


def _enough_test_problems(config: Any) -> Iterator[Diagnostic]:
    data = config.data
    space = 10 ** (data.digits * data.operands) * (2 if data.subtract else 1) ** (data.operands - 1)
    held_out = int(space * data.test_fraction)
    if config.eval.problems * 2 > held_out:
        yield Diagnostic(
            f"`eval.problems` ({config.eval.problems}) needs at least twice as many held-out "
            f"problems, but the task holds out about {held_out}",
            config.eval.span_of("problems"),
            help="raise `data.digits`, `data.operands` or `data.test_fraction`, "
            "or ask for fewer problems",
        )


OBJECTIVE = Objective(
    kind="rlvr",
    node=RLVRObjective,
    needs="sequence_model",
    consumes="problems",
    sections={"train": Train, "eval": PassAtK},
    metrics=METRIC_HELP,
    default_metrics=("train_loss", "pass_at_1", "reward", "completion_length"),
    templates={"train.py": "objectives/rlvr.py.j2"},
    # bf16 autocast and torch.compile (dynamic shapes) around the training forward passes;
    # sampling, whose shapes change every token, stays eager. DDP: every rank draws the
    # same demonstrations and prompts, trains on its shard and samples its own rollouts.
    target=TargetSupport(
        precision=("fp32", "bf16", "fp16"),
        compile=(False, True),
        kernels=("eager", "triton"),
        strategy=("single", "ddp"),
        ddp_batch=(("train", "pretrain", "batch_size"), ("train", "rl", "prompts")),
        variable=frozenset({"precision", "compile", "kernels"}),
        ensemble=True,
    ),
    # Members share the model, the task's shape (operands, digits: the prompt length) and
    # both stages' lengths and batch shapes, so that every step is the same stage for all;
    # each draws its own problems, slips and rollouts, with its own optimiser settings,
    # GRPO coefficients and evaluation.
    ensemble_fields=(
        "seed",
        "data.noise",
        "data.test_fraction",
        "objective.clip",
        "objective.kl",
        "objective.temperature",
        "objective.top_p",
        "train.pretrain_lr",
        "train.pretrain_warmup",
        "train.pretrain_eval_every",
        "train.rl_lr",
        "train.rl_eval_every",
        "train.weight_decay",
        "train.beta1",
        "train.beta2",
        "train.min_lr_ratio",
        "train.grad_clip",
        "train.checkpoint_every",
        "eval",
    ),
    run_rules=(_enough_test_problems,),
    report="expc.runtime.rlvr.report:analyse",
    measures_architecture=True,  # the probe on held-out worked solutions, at every row
    # `--smoke` without a `profile smoke`: a few steps of each stage, a tiny pass@k.
    smoke=(
        ir.Override(path=("train", "pretrain", "steps"), value=20),
        ir.Override(path=("train", "pretrain", "eval_every"), value=10),
        ir.Override(path=("train", "rl", "steps"), value=4),
        ir.Override(path=("train", "rl", "prompts"), value=4),
        ir.Override(path=("eval", "problems"), value=4),
        ir.Override(path=("eval", "samples"), value=8),
        ir.Override(path=("eval", "track_samples"), value=2),
    ),
)
