"""`objective next_token`: language modelling, cross-entropy on the next byte, trained on
any data that yields text by any sequence model (the Gated Attention reproduction).

Specs select it with `objective next_token {}`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import Field

from expc.compiler.components.base import Objective, TargetSupport
from expc.compiler.components.data.arithmetic import ArithmeticData
from expc.compiler.components.data.text import TextData
from expc.compiler.diagnostics import Diagnostic
from expc.compiler.ir import STRUCTURAL, Node, run_folders

# --- data --------------------------------------------------------------------------------


# --- model -------------------------------------------------------------------------------


# --- objective ---------------------------------------------------------------------------


class NextToken(Node):
    """`objective next_token {}`: cross-entropy on the next byte."""

    kind: Literal["next_token"] = Field("next_token", json_schema_extra=STRUCTURAL)


class Evaluation(Node):
    """`eval { ... }`: what each evaluation measures beyond the validation loss.

    context_multiples: validation loss also at these multiples of the training context
    (RoPE extrapolation), reported as `val_loss_x2`, `val_loss_x4`, ...
    rope_extension: at each multiple m > 1, also the loss with the rotary positions
    stretched by m, with no training at the longer context: `yarn` (YaRN, Peng et al.
    2023: NTK-by-parts interpolation and attention temperature) or `pi` (position
    interpolation: every frequency divided by m), reported as `val_loss_x2_yarn`, ...
    attention_maps: after training, save a PNG of each layer's attention (averaged over
    heads) on a held-out sequence, to show attention sinks.
    """

    context_multiples: tuple[Annotated[int, Field(ge=1, le=64)], ...] = Field(
        (1,), json_schema_extra=STRUCTURAL
    )
    rope_extension: tuple[Literal["yarn", "pi"], ...] = Field((), json_schema_extra=STRUCTURAL)
    attention_maps: bool = Field(False, json_schema_extra=STRUCTURAL)
    # Also write every metrics row as TensorBoard scalars (run_dir/tensorboard).
    tensorboard: bool = Field(False, json_schema_extra=STRUCTURAL)


# --- metrics -----------------------------------------------------------------------------

METRIC_HELP: dict[str, str] = {
    "train_loss": "mean training loss since the previous evaluation",
    "val_loss": "mean next-token loss (nats) on held-out batches",
    "val_ppl": "exp(val_loss)",
    "loss_spikes": "training steps so far whose loss exceeded spike_factor x the running median",
}


# --- cross-field rules -------------------------------------------------------------------


def _finetune_data_in_every_run_or_none(spec: Any) -> Iterator[Diagnostic]:
    """A stage and its data are code (a second loop, a loader): every run has them, with one
    kind of data, or none does."""

    def shape(config: Any) -> tuple[bool, str | None]:
        stage = config.train.finetune
        return stage is not None, stage.data.kind if stage and stage.data else None

    base = shape(spec.config)
    for run in spec.runs:
        if shape(run.config) != base:
            stage = run.config.train.finetune or run.config.train
            yield Diagnostic(
                "`train.finetune` and its `data` kind must be the same in every run",
                stage.span_of("data") if run.config.train.finetune else stage.span,
                help="give the base spec the stage (and its data), and vary only their fields",
            )
            return


def _ensembles_train_one_stage(spec: Any) -> Iterator[Diagnostic]:
    """An ensemble's loop is the one-stage loop: a finetuning stage switches data, batch
    and optimiser mid-run, which its vectorized step does not do."""
    target = spec.config.target
    if target.ensemble != "off" and spec.config.train.finetune is not None:
        yield Diagnostic(
            "`target.ensemble` trains one stage; this spec has `train.finetune`",
            target.span_of("ensemble"),
            help="remove `ensemble`, or train the stages as two specs (`train.init`)",
        )


def _long_context_needs_the_base_context(config: Any) -> Iterator[Diagnostic]:
    multiples = config.eval.context_multiples
    if 1 not in multiples or len(set(multiples)) != len(multiples):
        yield Diagnostic(
            "`eval.context_multiples` must hold 1 (the training context) once, "
            f"got {list(multiples)}",
            config.eval.span_of("context_multiples"),
            help="for example `context_multiples = [1, 2, 4]`",
        )


def _rope_extension_needs_a_longer_context(config: Any) -> Iterator[Diagnostic]:
    extensions = config.eval.rope_extension
    if not extensions:
        return
    where = config.eval.span_of("rope_extension")
    if len(set(extensions)) != len(extensions):
        yield Diagnostic(f"`eval.rope_extension` names a method twice: {list(extensions)}", where)
    if max(config.eval.context_multiples) == 1:
        yield Diagnostic(
            "`eval.rope_extension` stretches the positions to the longer contexts of "
            "`eval.context_multiples`, which has only the training context",
            where,
            help="add the multiples to evaluate at, e.g. `context_multiples = [1, 2, 4]`",
        )


def _one_bos_for_both_stages(config: Any) -> Iterator[Diagnostic]:
    finetune = config.train.finetune
    data = getattr(finetune, "data", None) if finetune is not None else None
    if data is None or "bos" not in data.field_spans:
        return
    spec_bos = getattr(config.data, "bos", False)
    if data.bos != spec_bos:
        yield Diagnostic(
            f"`train.finetune.data.bos = {str(data.bos).lower()}`, but the model was built "
            f"for `data.bos = {str(spec_bos).lower()}`: both stages feed one model, whose "
            "vocabulary holds the BOS token or not",
            data.span_of("bos"),
            help="set `bos` in the spec's `data` block; it applies to both stages",
        )


# The data a stage may read instead of the spec's `data`: every kind that yields text
# (tests/test_components.py checks this against the registry's table).
TextSource = Annotated[TextData | ArithmeticData, Field(discriminator="kind")]


class Finetune(Node):
    """`finetune { ... }` in `train`: a second stage of `steps` steps that starts
    from the first stage's final weights with a fresh AdamW (the same betas and weight
    decay), its own warmup and cosine decay of `lr` to `min_lr_ratio * lr`, its own batch
    size, and an evaluation every `eval_every` steps. `data KIND { ... }` inside it trains
    the stage on other text (`data arithmetic`, another corpus); without it the stage
    continues on the spec's `data`. Metrics rows carry their `stage` (1 or 2)."""

    steps: Annotated[int, Field(ge=1, le=10**9)] = 100
    batch_size: Annotated[int, Field(ge=1, le=65536)] = 32
    lr: Annotated[float, Field(gt=0.0, le=10.0)] = 3e-4
    min_lr_ratio: Annotated[float, Field(ge=0.0, le=1.0)] = 0.1
    warmup: Annotated[int, Field(ge=0, le=10**9)] = 0
    eval_every: Annotated[int, Field(ge=1, le=10**9)] = 100
    data: TextSource | None = None


class Train(Node):
    """`train { ... }`: AdamW with linear warmup and cosine decay to `min_lr_ratio * lr`."""

    steps: Annotated[int, Field(ge=1, le=10**9)] = 1000
    batch_size: Annotated[int, Field(ge=1, le=65536)] = 32
    lr: Annotated[float, Field(gt=0.0, le=10.0)] = 1e-3
    min_lr_ratio: Annotated[float, Field(ge=0.0, le=1.0)] = 0.1
    warmup: Annotated[int, Field(ge=0, le=10**9)] = 50
    weight_decay: Annotated[float, Field(ge=0.0, le=10.0)] = 0.1
    beta1: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.9
    beta2: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.95
    grad_clip: Annotated[float, Field(ge=0.0)] = 1.0
    eval_every: Annotated[int, Field(ge=1, le=10**9)] = 100
    eval_batches: Annotated[int, Field(ge=1, le=10**6)] = 10
    # A loss spike (metric `loss_spikes`): a training loss above spike_factor times the
    # median of the previous spike_window losses.
    spike_factor: Annotated[float, Field(gt=1.0, le=100.0)] = 1.5
    spike_window: Annotated[int, Field(ge=2, le=100_000)] = 50
    # Checkpoint (atomically) every N steps; 0 = at every evaluation. `--resume` continues.
    checkpoint_every: Annotated[int, Field(ge=0, le=10**9)] = 0
    # Start from the weights of another run of the same model (a fresh optimiser and
    # schedule): `init = run("gated_attention", "gated")`, or a run folder.
    init: str = Field(
        "", max_length=4096, json_schema_extra=run_folders("sequence_model", same_model=True)
    )
    finetune: Finetune | None = None


OBJECTIVE = Objective(
    kind="next_token",
    node=NextToken,
    needs="sequence_model",
    consumes="text",
    sections={"train": Train, "eval": Evaluation},
    metrics=METRIC_HELP,
    default_metrics=("train_loss", "val_loss", "val_ppl"),
    templates={"train.py": "objectives/next_token.py.j2"},
    target=TargetSupport(
        precision=("fp32", "bf16", "fp16"),
        compile=(False, True),
        kernels=("eager", "triton"),
        strategy=("single", "ddp"),
        ddp_batch=(("train", "batch_size"),),
        variable=frozenset({"precision", "compile", "kernels"}),
        ensemble=True,
    ),
    # Members share the model, the context and the batch size; each reads its own data
    # (and `train.init` weights), with its own schedule, optimiser and evaluation.
    ensemble_fields=(
        "seed",
        "data.corpus",
        "data.val_fraction",
        "data.operands",
        "data.digits",
        "data.subtract",
        "data.test_fraction",
        "data.noise",
        "data.demonstrations",
        "train.steps",
        "train.lr",
        "train.min_lr_ratio",
        "train.warmup",
        "train.weight_decay",
        "train.beta1",
        "train.beta2",
        "train.grad_clip",
        "train.eval_every",
        "train.eval_batches",
        "train.spike_factor",
        "train.spike_window",
        "train.checkpoint_every",
        "train.init",
        "eval",
    ),
    run_rules=(
        _long_context_needs_the_base_context,
        _rope_extension_needs_a_longer_context,
        _one_bos_for_both_stages,
    ),
    spec_rules=(_finetune_data_in_every_run_or_none, _ensembles_train_one_stage),
    measures_architecture=True,
    # A learning-rate sweep's stability table and the longer-context table (nothing for a
    # spec without either).
    report="expc.runtime.next_token_report:analyse",
)
