"""`objective diffusion`: an image denoiser (`model unet`, or `model transformer` as a DiT)
trained with the DDPM epsilon-prediction objective on n images, evaluated for memorization
and sample quality at log-spaced training steps (issue: why diffusion models don't
memorize, Bonnaire et al.).

Specs select it with `objective diffusion { ... }`.
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


# --- model -------------------------------------------------------------------------------


# --- objective ---------------------------------------------------------------------------


class Diffusion(Node):
    """`objective diffusion { ... }`: DDPM epsilon prediction, loss ||eps - eps_theta(x_t, t)||^2
    with t ~ U{0..T-1}. schedule: `linear` betas from beta_start to beta_end (the paper:
    1e-4 .. 2e-2, T = 1000) or Nichol & Dhariwal's `cosine`."""

    kind: Literal["diffusion"] = Field("diffusion", json_schema_extra=STRUCTURAL)
    schedule: Literal["linear", "cosine"] = Field("linear", json_schema_extra=STRUCTURAL)
    timesteps: Annotated[int, Field(ge=2, le=100_000)] = 1000
    beta_start: Annotated[float, Field(gt=0.0, lt=1.0)] = 1e-4
    beta_end: Annotated[float, Field(gt=0.0, lt=1.0)] = 2e-2


# --- training and evaluation -------------------------------------------------------------


class DiffusionTrain(Node):
    """`train { ... }`: Adam at a constant learning rate (as the paper), minibatches drawn
    with replacement from the n training images.

    ema: evaluations sample from an exponential moving average of the weights with this
    decay (warmed up as min(ema, (1 + k) / (10 + k)) after k updates); 0 = the raw weights.
    It averages over ~1 / (1 - ema) steps, far below the timescales measured.

    stop_memorized: end a run early once the memorization fraction reaches this value at an
    evaluation (0 = never); tau_mem is read well before, so this only saves time.
    checkpoint_every: 0 = checkpoint at every evaluation.
    """

    steps: Annotated[int, Field(ge=1, le=10**9)] = 4000
    batch_size: Annotated[int, Field(ge=1, le=65536)] = 16
    lr: Annotated[float, Field(gt=0.0, le=10.0)] = 2e-3
    beta1: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.9
    beta2: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.999
    weight_decay: Annotated[float, Field(ge=0.0, le=10.0)] = 0.0
    grad_clip: Annotated[float, Field(ge=0.0)] = 0.0
    ema: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    stop_memorized: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    checkpoint_every: Annotated[int, Field(ge=0, le=10**9)] = 0


class DiffusionEval(Node):
    """`eval { ... }`: what each evaluation measures, and when evaluations happen.

    Evaluations: `evaluations` training steps spaced evenly in log(step) from `first_eval`
    to `train.steps`. Each draws `samples` images with `sampler` (`ddim`, deterministic when
    eta = 0, as the paper's 100-step DDIM; or `ddpm` ancestral) in `sampling_steps` steps,
    from the same starting noise every time. A sample is memorized when its nearest
    training image is closer than `gap_threshold` (1/3) times the distance to the second
    nearest (pixel L2). Denoising losses use the first `loss_images` training / held-out
    images with fixed (t, noise). The report reads tau_mem where the memorization fraction
    reaches `memorization_threshold` and tau_gen where the quality distance has made
    1 - `generalization_tolerance` of its drop from the first evaluation to its best.
    `sample_grids` writes a PNG of 64 samples at every evaluation.
    """

    evaluations: Annotated[int, Field(ge=1, le=1000)] = 16
    first_eval: Annotated[int, Field(ge=1, le=10**9)] = 100
    samples: Annotated[int, Field(ge=2, le=100_000)] = 256
    sampler: Literal["ddim", "ddpm"] = Field("ddim", json_schema_extra=STRUCTURAL)
    sampling_steps: Annotated[int, Field(ge=1, le=100_000)] = 20
    eta: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    clip: bool = True
    gap_threshold: Annotated[float, Field(gt=0.0, lt=1.0)] = 1.0 / 3.0
    loss_images: Annotated[int, Field(ge=1, le=100_000)] = 256
    memorization_threshold: Annotated[float, Field(gt=0.0, le=1.0)] = 0.1
    generalization_tolerance: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    sample_grids: bool = Field(True, json_schema_extra=STRUCTURAL)


# --- metrics -----------------------------------------------------------------------------

METRIC_HELP: dict[str, str] = {
    "train_loss": "mean training-batch loss since the previous evaluation",
    "train_denoising_loss": "eps-prediction MSE on training images, fixed (t, noise)",
    "test_denoising_loss": "eps-prediction MSE on held-out images, fixed (t, noise)",
    "memorization": (
        "f_mem: share of samples whose nearest training image is closer than "
        "gap_threshold x the second nearest (pixel L2)"
    ),
    "gap_ratio": "median over samples of (nearest / second-nearest training-image distance)",
    "quality": (
        "Frechet distance between samples and held-out images in a fixed random-conv "
        "feature space (FID's form without Inception; lower is better)"
    ),
    "kernel_quality": "KID-style unbiased MMD^2 in the same features (lower is better)",
}


# --- cross-field rules -------------------------------------------------------------------


def _betas_increase(config: Any) -> Iterator[Diagnostic]:
    objective = config.objective
    if objective.schedule == "linear" and objective.beta_end <= objective.beta_start:
        yield Diagnostic(
            f"`objective.beta_end` ({objective.beta_end}) must exceed `beta_start` "
            f"({objective.beta_start})",
            objective.span_of("beta_end"),
        )


def _sampling_steps_fit(config: Any) -> Iterator[Diagnostic]:
    if config.eval.sampling_steps > config.objective.timesteps:
        yield Diagnostic(
            f"`eval.sampling_steps` ({config.eval.sampling_steps}) exceeds "
            f"`objective.timesteps` ({config.objective.timesteps})",
            config.eval.span_of("sampling_steps"),
        )


def _first_eval_within_training(config: Any) -> Iterator[Diagnostic]:
    if config.eval.first_eval > config.train.steps:
        yield Diagnostic(
            f"`eval.first_eval` ({config.eval.first_eval}) is after the last step "
            f"({config.train.steps})",
            config.eval.span_of("first_eval"),
            help="lower `eval.first_eval` or raise `train.steps`",
        )


OBJECTIVE = Objective(
    kind="diffusion",
    node=Diffusion,
    needs="image_denoiser",
    consumes="images",
    sections={"train": DiffusionTrain, "eval": DiffusionEval},
    metrics=METRIC_HELP,
    default_metrics=(
        "train_loss",
        "train_denoising_loss",
        "test_denoising_loss",
        "memorization",
        "gap_ratio",
        "quality",
    ),
    templates={"train.py": "objectives/diffusion.py.j2"},
    # Autocast and torch.compile around the training loss (sampling stays fp32 and eager);
    # DDP: every rank draws the same images, timesteps and noise and trains on its shard.
    target=TargetSupport(
        precision=("fp32", "bf16", "fp16"),
        compile=(False, True),
        strategy=("single", "ddp"),
        ddp_batch=(("train", "batch_size"),),
        variable=frozenset({"precision", "compile"}),
        ensemble=True,
    ),
    # Members share the network, the image shape, the batch and the noise schedule; each
    # draws from its own seed and training set, with its own optimiser, EMA and evaluation.
    ensemble_fields=(
        "seed",
        "data.n",
        "data.held_out",
        "data.seed",
        "data.shapes",
        "train.steps",
        "train.lr",
        "train.beta1",
        "train.beta2",
        "train.weight_decay",
        "train.grad_clip",
        "train.ema",
        "train.stop_memorized",
        "train.checkpoint_every",
        "eval",
    ),
    run_rules=(_betas_increase, _sampling_steps_fit, _first_eval_within_training),
    variable_structure=frozenset({("objective", "schedule"), ("eval", "sampler")}),
    report="expc.runtime.diffusion.report:analyse",
    report_reads=("eval.memorization_threshold", "eval.generalization_tolerance", "data.n"),
    # The transformer's probe on held-out images at the middle timestep (a DiT only).
    measures_architecture=True,
    # `--smoke` without a `profile smoke`: a few steps, two small evaluations.
    smoke=(
        ir.Override(path=("train", "steps"), value=6),
        ir.Override(path=("eval", "first_eval"), value=3),
        ir.Override(path=("eval", "evaluations"), value=2),
        ir.Override(path=("eval", "samples"), value=16),
        ir.Override(path=("eval", "sampling_steps"), value=3),
        ir.Override(path=("eval", "loss_images"), value=16),
    ),
)
