"""The diffusion backend: a small U-Net trained with the DDPM epsilon-prediction objective on
n images, evaluated for memorization and sample quality at log-spaced training steps
(issue: why diffusion models don't memorize, Bonnaire et al.).

Specs select it with `objective diffusion { ... }`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Literal

from pydantic import Field

from expc.compiler import ir
from expc.compiler.backends import Backend, standard_sections
from expc.compiler.diagnostics import Diagnostic
from expc.compiler.ir import STRUCTURAL, Node

# --- data --------------------------------------------------------------------------------


class ImageData(Node):
    """`data shapes { ... }` or `data images { path = "..." ... }`: n training images and a
    disjoint held-out set, pixels scaled to [-1, 1].

    shapes: the procedural family, generated offline. Each image is a shaded background with
    `shapes` anti-aliased discs, squares or bars of random position, size, angle and
    brightness, drawn from its own generator seeded by (seed, stream, index): the training
    set is the first `n` images (nested in n), the held-out set `held_out` images of a
    separate stream.

    images: a folder of PNGs or a .npy array (N, H, W[, C]) at `path`, shuffled once by
    `seed`; the last `held_out` images are held out and the first `n` of the rest train
    (nested in n). `size` > 0 centre-crops and resizes PNGs (a .npy array must already have
    that size); 0 keeps them as they are. uint8 pixels are read as 0..255, float pixels as
    [0, 1] (or [-1, 1] when negative values occur).
    """

    kind: Literal["shapes", "images"] = Field("shapes", json_schema_extra=STRUCTURAL)
    path: Annotated[str, Field(max_length=4096)] = ""
    n: Annotated[int, Field(ge=2, le=10**7)] = 64
    held_out: Annotated[int, Field(ge=2, le=10**7)] = 512
    size: Annotated[int, Field(ge=0, le=1024)] = 16
    channels: Annotated[int, Field(ge=1, le=3)] = 1
    shapes: Annotated[int, Field(ge=1, le=16)] = 2
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)] = 0


# --- model -------------------------------------------------------------------------------


class UNet(Node):
    """`model unet { ... }`: a small DDPM U-Net (Ho et al.; the paper's Unet.py scaled down).

    A sinusoidal time embedding of size `width`, expanded to 4 x width by an MLP, is added
    inside every residual block (GroupNorm, SiLU, 3x3 conv, twice, with dropout). Level i
    works at 1/2^i of the image size with width x channel_multipliers[i] channels and
    `res_blocks` residual blocks (the up path one more, taking the skips);
    `attention[i]` adds self-attention (4 heads) after each block of level i;
    `mid_attention` adds it between the two residual blocks of the bottleneck.
    """

    family: Literal["unet"] = Field("unet", json_schema_extra=STRUCTURAL)
    width: Annotated[int, Field(ge=1, le=4096)] = 16
    channel_multipliers: tuple[Annotated[int, Field(ge=1, le=64)], ...] = Field(
        (1, 2), min_length=1, max_length=8, json_schema_extra=STRUCTURAL
    )
    attention: tuple[bool, ...] = Field((False, False), max_length=8, json_schema_extra=STRUCTURAL)
    mid_attention: bool = Field(False, json_schema_extra=STRUCTURAL)
    res_blocks: Annotated[int, Field(ge=1, le=16)] = 1
    groups: Annotated[int, Field(ge=1, le=1024)] = 8
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0


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

Metric = Literal[
    "train_loss",
    "train_denoising_loss",
    "test_denoising_loss",
    "memorization",
    "gap_ratio",
    "quality",
    "kernel_quality",
]
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


class DiffusionConfig(ir.Config):
    """One run of a diffusion experiment."""

    experiment: ir.Experiment
    data: ImageData
    model: UNet
    objective: Diffusion
    train: DiffusionTrain = DiffusionTrain()
    eval: DiffusionEval = DiffusionEval()
    target: ir.Target = ir.Target()
    metrics: tuple[Metric, ...] = Field(
        (
            "train_loss",
            "train_denoising_loss",
            "test_denoising_loss",
            "memorization",
            "gap_ratio",
            "quality",
        ),
        json_schema_extra=STRUCTURAL,
    )


# --- cross-field rules -------------------------------------------------------------------


def _data_fields_fit_the_kind(config: DiffusionConfig) -> Iterator[Diagnostic]:
    data = config.data
    if data.channels == 2:
        yield Diagnostic(
            "`data.channels` must be 1 (grey) or 3 (RGB), got 2", data.span_of("channels")
        )
    if data.kind == "images" and not data.path:
        yield Diagnostic(
            "`data images` needs a `path`: a folder of .png files or a .npy array",
            data.span_of("kind"),
            help='for example `path = "data/faces.npy"`',
        )
    if data.kind == "shapes":
        if data.path:
            yield Diagnostic(
                "`path` belongs to `data images`; `data shapes` generates its images",
                data.span_of("path"),
                help="remove `path`, or write `data images`",
            )
        if data.size < 4:
            yield Diagnostic(
                f"`data shapes` needs `size` >= 4 pixels, got {data.size}", data.span_of("size")
            )


def _attention_per_level(config: DiffusionConfig) -> Iterator[Diagnostic]:
    model = config.model
    if len(model.attention) != len(model.channel_multipliers):
        yield Diagnostic(
            f"`model.attention` has {len(model.attention)} entries but `channel_multipliers` "
            f"has {len(model.channel_multipliers)} levels",
            model.span_of("attention"),
            help="give one true/false per level, e.g. "
            f"`attention = [{', '.join(['false'] * len(model.channel_multipliers))}]`",
        )


def _groups_divide_channels(config: DiffusionConfig) -> Iterator[Diagnostic]:
    model = config.model
    for multiplier in model.channel_multipliers:
        channels = model.width * multiplier
        if channels % model.groups:
            yield Diagnostic(
                f"GroupNorm needs `model.groups` ({model.groups}) to divide every level's "
                f"channels, but width {model.width} x {multiplier} = {channels}",
                model.span_of("groups"),
                help="choose a width that is a multiple of `groups`",
            )
            return


def _size_halves_per_level(config: DiffusionConfig) -> Iterator[Diagnostic]:
    size, levels = config.data.size, len(config.model.channel_multipliers)
    if size and size % 2 ** (levels - 1):
        yield Diagnostic(
            f"image size {size} cannot be halved {levels - 1} times "
            f"(one per level after the first)",
            config.data.span_of("size"),
            help=f"use a multiple of {2 ** (levels - 1)}",
        )


def _betas_increase(config: DiffusionConfig) -> Iterator[Diagnostic]:
    objective = config.objective
    if objective.schedule == "linear" and objective.beta_end <= objective.beta_start:
        yield Diagnostic(
            f"`objective.beta_end` ({objective.beta_end}) must exceed `beta_start` "
            f"({objective.beta_start})",
            objective.span_of("beta_end"),
        )


def _sampling_steps_fit(config: DiffusionConfig) -> Iterator[Diagnostic]:
    if config.eval.sampling_steps > config.objective.timesteps:
        yield Diagnostic(
            f"`eval.sampling_steps` ({config.eval.sampling_steps}) exceeds "
            f"`objective.timesteps` ({config.objective.timesteps})",
            config.eval.span_of("sampling_steps"),
        )


def _first_eval_within_training(config: DiffusionConfig) -> Iterator[Diagnostic]:
    if config.eval.first_eval > config.train.steps:
        yield Diagnostic(
            f"`eval.first_eval` ({config.eval.first_eval}) is after the last step "
            f"({config.train.steps})",
            config.eval.span_of("first_eval"),
            help="lower `eval.first_eval` or raise `train.steps`",
        )


def _what_the_backend_runs(spec: ir.Spec) -> Iterator[Diagnostic]:
    target = spec.config.target
    unsupported = {
        "precision": (target.precision, "fp32"),
        "compile": (target.compile, False),
        "kernels": (target.kernels, "eager"),
        "strategy": (target.strategy, "single"),
    }
    for name, (value, supported) in unsupported.items():
        if value != supported:
            shown = str(value).lower() if isinstance(value, bool) else value
            yield Diagnostic(
                f"the diffusion backend does not support `target.{name} = {shown}`",
                target.span_of(name),
                help=f"remove it (the default is {str(supported).lower()})",
            )


BACKEND = Backend(
    name="diffusion",
    objective="diffusion",
    config=DiffusionConfig,
    sections=standard_sections(
        data={"shapes": ImageData, "images": ImageData},
        model={"unet": UNet},
        objective={"diffusion": Diffusion},
    ),
    required=("experiment", "data", "model", "objective"),
    templates=("diffusion/model.py.j2", "diffusion/train.py.j2"),
    metrics=METRIC_HELP,
    run_rules=(
        _data_fields_fit_the_kind,
        _attention_per_level,
        _groups_divide_channels,
        _size_halves_per_level,
        _betas_increase,
        _sampling_steps_fit,
        _first_eval_within_training,
    ),
    spec_rules=(_what_the_backend_runs,),
    variable_structure=frozenset({("objective", "schedule"), ("eval", "sampler")}),
    report="expc.runtime.diffusion.report:analyse",
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
