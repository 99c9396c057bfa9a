"""The language-modelling backend: a byte-level decoder-only transformer trained with
next-token prediction, with the Gated Attention paper's gates (issue: gated attention).

Specs select it with `objective next_token {}`.
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


class TextData(Node):
    """`data text { ... }`: a byte-level text corpus (vocabulary of 256 bytes).

    `corpus` is the built-in "pydoc_data.topics" (the English text shipped with CPython) or
    a path to a local UTF-8 text file, relative to the directory `expc run` is started in.
    """

    kind: Literal["text"] = Field("text", json_schema_extra=STRUCTURAL)
    corpus: Annotated[str, Field(min_length=1, max_length=4096)] = "pydoc_data.topics"
    context: Annotated[int, Field(ge=2, le=65536)] = 128
    val_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.1


# --- model -------------------------------------------------------------------------------


class Attention(Node):
    """`attention { ... }` inside a transformer: the Gated Attention paper's gates.

    A gate multiplies a tensor Y by act(X W), X being the attention input (after the
    pre-norm), so the gate is query-dependent. gate: `elementwise` = one gate per channel of
    each head, `headwise` = one scalar per head. gate_position: `sdpa` (G1, on the attention
    output of each head, before the output projection) or `value` (G2, on the value
    projection). gate_activation: `sigmoid` (the paper's default) or `silu`.
    """

    gate: Literal["none", "elementwise", "headwise"] = Field("none", json_schema_extra=STRUCTURAL)
    gate_position: Literal["sdpa", "value"] = Field("sdpa", json_schema_extra=STRUCTURAL)
    gate_activation: Literal["sigmoid", "silu"] = Field("sigmoid", json_schema_extra=STRUCTURAL)


class Transformer(Node):
    """`model transformer { ... }`: a decoder-only transformer, pre-norm, tied embeddings."""

    family: Literal["transformer"] = Field("transformer", json_schema_extra=STRUCTURAL)
    layers: Annotated[int, Field(ge=1, le=1024)] = 4
    width: Annotated[int, Field(ge=1, le=65536)] = 128
    heads: Annotated[int, Field(ge=1, le=1024)] = 4
    mlp_ratio: Annotated[int, Field(ge=1, le=64)] = 4
    norm: Literal["rmsnorm", "layernorm"] = Field("rmsnorm", json_schema_extra=STRUCTURAL)
    # pre: x + f(norm(x)); post: norm(x + f(x)); sandwich: x + norm(f(norm(x))).
    norm_layout: Literal["pre", "post", "sandwich"] = Field("pre", json_schema_extra=STRUCTURAL)
    position: Literal["rope"] = Field("rope", json_schema_extra=STRUCTURAL)
    rope_base: Annotated[float, Field(gt=1.0, le=1e9)] = 10000.0
    attention: Attention = Attention()


# --- objective ---------------------------------------------------------------------------


class NextToken(Node):
    """`objective next_token {}`: cross-entropy on the next byte."""

    kind: Literal["next_token"] = Field("next_token", json_schema_extra=STRUCTURAL)


class Evaluation(Node):
    """`eval { ... }`: what each evaluation measures beyond the validation loss.

    context_multiples: validation loss also at these multiples of the training context
    (RoPE extrapolation), reported as `val_loss_x2`, `val_loss_x4`, ...
    attention_maps: after training, save a PNG of each layer's attention (averaged over
    heads) on a held-out sequence, to show attention sinks.
    """

    context_multiples: tuple[Annotated[int, Field(ge=1, le=64)], ...] = Field(
        (1,), json_schema_extra=STRUCTURAL
    )
    attention_maps: bool = Field(False, json_schema_extra=STRUCTURAL)
    # Also write every metrics row as TensorBoard scalars (run_dir/tensorboard).
    tensorboard: bool = Field(False, json_schema_extra=STRUCTURAL)


# --- metrics -----------------------------------------------------------------------------

Metric = Literal[
    "train_loss",
    "val_loss",
    "val_ppl",
    "first_token_attention",
    "max_activation",
    "gate_score",
    "loss_spikes",
]
METRIC_HELP: dict[str, str] = {
    "train_loss": "mean training loss since the previous evaluation",
    "val_loss": "mean next-token loss (nats) on held-out batches",
    "val_ppl": "exp(val_loss)",
    "first_token_attention": (
        "F-Attn: attention probability on position 0, averaged over layers, heads and "
        "query positions > 0 (the attention sink)"
    ),
    "max_activation": (
        "M-Act: max |hidden state| output by each layer, averaged over layers (massive activations)"
    ),
    "gate_score": "mean attention-gate value act(XW) (gated runs only)",
    "loss_spikes": "training steps so far whose loss exceeded spike_factor x the running median",
}


class LMConfig(ir.Config):
    """One run of a language-modelling experiment."""

    experiment: ir.Experiment
    data: TextData
    model: Transformer
    objective: NextToken
    train: ir.Train = ir.Train()
    eval: Evaluation = Evaluation()
    target: ir.Target = ir.Target()
    metrics: tuple[Metric, ...] = Field(
        ("train_loss", "val_loss", "val_ppl"), json_schema_extra=STRUCTURAL
    )


# --- cross-field rules -------------------------------------------------------------------


def _heads_divide_width(config: LMConfig) -> Iterator[Diagnostic]:
    model = config.model
    if model.width % model.heads:
        yield Diagnostic(
            f"`model.width` ({model.width}) is not divisible by `model.heads` ({model.heads})",
            model.span_of("heads"),
            help=f"choose heads among {_divisors(model.width)}",
        )


def _rope_needs_even_head_dim(config: LMConfig) -> Iterator[Diagnostic]:
    model = config.model
    head_dim, remainder = divmod(model.width, model.heads)
    if not remainder and model.position == "rope" and head_dim % 2:
        yield Diagnostic(
            f"rotary embeddings need an even head size, but width {model.width} / "
            f"heads {model.heads} = {head_dim}",
            model.span_of("heads"),
            help="change `model.width` or `model.heads`",
        )


def _long_context_needs_the_base_context(config: LMConfig) -> Iterator[Diagnostic]:
    multiples = config.eval.context_multiples
    if 1 not in multiples or len(set(multiples)) != len(multiples):
        yield Diagnostic(
            "`eval.context_multiples` must hold 1 (the training context) once, "
            f"got {list(multiples)}",
            config.eval.span_of("context_multiples"),
            help="for example `context_multiples = [1, 2, 4]`",
        )


def _gate_metric_needs_a_gate(spec: ir.Spec) -> Iterator[Diagnostic]:
    if "gate_score" in spec.config.metrics and all(
        run.config.model.attention.gate == "none" for run in spec.runs
    ):
        yield Diagnostic(
            "metric `gate_score` needs a gated attention in at least one run",
            spec.config.span_of("metrics"),
            help="set `model.attention.gate = elementwise` in a variant, or drop the metric",
        )


def _triton_needs_an_sdpa_gate(spec: ir.Spec) -> Iterator[Diagnostic]:
    target = spec.config.target
    if target.kernels == "triton" and not any(
        run.config.model.attention.gate != "none"
        and run.config.model.attention.gate_position == "sdpa"
        for run in spec.runs
    ):
        yield Diagnostic(
            "`target.kernels = triton` fuses the SDPA-output gate, but no run has one",
            target.span_of("kernels"),
            help="set `model.attention.gate` with `gate_position = sdpa`, or use `kernels = eager`",
        )


def _divisors(n: int) -> str:
    found = [d for d in range(1, min(n, 64) + 1) if n % d == 0]
    return ", ".join(map(str, found[-6:]))


BACKEND = Backend(
    name="lm",
    objective="next_token",
    config=LMConfig,
    sections=standard_sections(
        data={"text": TextData},
        model={"transformer": Transformer},
        objective={"next_token": NextToken},
    ),
    required=("experiment", "data", "model", "objective"),
    templates=("lm/model.py.j2", "lm/train.py.j2"),
    metrics=METRIC_HELP,
    run_rules=(
        _heads_divide_width,
        _rope_needs_even_head_dim,
        _long_context_needs_the_base_context,
    ),
    spec_rules=(_gate_metric_needs_a_gate, _triton_needs_an_sdpa_gate),
    variable_structure=frozenset(
        {
            ("model", "attention", "gate"),
            ("model", "attention", "gate_position"),
            ("model", "attention", "gate_activation"),
            ("model", "norm"),
            ("model", "norm_layout"),
        }
    ),
    extra_templates=lambda config: (
        ("lm/kernels.py.j2",) if config.target.kernels == "triton" else ()
    ),
)
