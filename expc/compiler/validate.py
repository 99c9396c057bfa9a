"""Stage 3: cross-field rules that types alone cannot express.

Each rule looks at one resolved run and points its diagnostic at the field to change,
showing the values involved (as HCL does), so a rule broken by a variant points at the
variant's line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from expc.compiler import ir
from expc.compiler.diagnostics import CompileError, Diagnostic

Rule = Callable[[ir.Config], Iterator[Diagnostic]]


def _heads_divide_width(config: ir.Config) -> Iterator[Diagnostic]:
    model = config.model
    if model.width % model.heads:
        yield Diagnostic(
            f"`model.width` ({model.width}) is not divisible by `model.heads` ({model.heads})",
            model.span_of("heads"),
            help=f"choose heads among {_divisors(model.width)}",
        )


def _rope_needs_even_head_dim(config: ir.Config) -> Iterator[Diagnostic]:
    model = config.model
    head_dim, remainder = divmod(model.width, model.heads)
    if not remainder and model.position == "rope" and head_dim % 2:
        yield Diagnostic(
            f"rotary embeddings need an even head size, but width {model.width} / "
            f"heads {model.heads} = {head_dim}",
            model.span_of("heads"),
            help="change `model.width` or `model.heads`",
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


def _target_is_consistent(spec: ir.Spec) -> Iterator[Diagnostic]:
    target = spec.config.target
    if target.precision == "fp16" and target.device != "cuda":
        yield Diagnostic(
            "`target.precision = fp16` needs `target cuda` (CPU autocast runs bf16)",
            target.span_of("precision"),
            help="use `precision = bf16` on the CPU",
        )
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


def _long_context_needs_the_base_context(config: ir.Config) -> Iterator[Diagnostic]:
    multiples = config.eval.context_multiples
    if 1 not in multiples or len(set(multiples)) != len(multiples):
        yield Diagnostic(
            "`eval.context_multiples` must hold 1 (the training context) once, "
            f"got {list(multiples)}",
            config.eval.span_of("context_multiples"),
            help="for example `context_multiples = [1, 2, 4]`",
        )


def _devices_need_ddp(config: ir.Config) -> Iterator[Diagnostic]:
    target = config.target
    if target.devices > 1 and target.strategy != "ddp":
        yield Diagnostic(
            f"`target.devices = {target.devices}` needs `strategy = ddp`",
            target.span_of("devices"),
            help="add `strategy = ddp` to the target block",
        )
    if target.strategy == "ddp" and config.train.batch_size % target.devices:
        yield Diagnostic(
            f"`train.batch_size` ({config.train.batch_size}) must split evenly over "
            f"`target.devices` ({target.devices})",
            config.train.span_of("batch_size"),
        )


RUN_RULES: tuple[Rule, ...] = (
    _devices_need_ddp,
    _heads_divide_width,
    _rope_needs_even_head_dim,
    _long_context_needs_the_base_context,
)


def _divisors(n: int) -> str:
    found = [d for d in range(1, min(n, 64) + 1) if n % d == 0]
    return ", ".join(map(str, found[-6:]))


def validate(spec: ir.Spec) -> list[Diagnostic]:
    """Raise CompileError with every broken rule; return the warnings."""
    found: list[Diagnostic] = []
    for run in spec.runs:
        for rule in RUN_RULES:
            found.extend(rule(run.config))
    found.extend(_gate_metric_needs_a_gate(spec))
    found.extend(_target_is_consistent(spec))
    errors = [d for d in found if d.severity == "error"]
    if errors:
        raise CompileError(errors)
    return [d for d in found if d.severity != "error"]
