"""`target cpu { ... }` / `target cuda { ... }`: where and how generated code runs, for every
objective.

Each objective declares which settings its generated code implements (`TargetSupport`);
one rule here checks every run against that declaration, so an unsupported combination
gets the same located message whatever the objective, naming what is supported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, PlainValidator

from expc.compiler import ir
from expc.compiler.diagnostics import Diagnostic
from expc.compiler.ir import STRUCTURAL, Node

if TYPE_CHECKING:
    from expc.compiler.components.base import Objective


MAX_ENSEMBLE = 256


def _ensemble(value: Any) -> str | int:
    """`off`, `auto`, or the most members one ensemble holds (2 or more)."""
    if value in ("off", "auto"):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and 2 <= value <= MAX_ENSEMBLE:
        return value
    raise ValueError(
        f"`ensemble` is `off`, `auto` or the most members of one ensemble (2 to {MAX_ENSEMBLE})"
    )


class Target(Node):
    """`target cpu { ... }` or `target cuda { ... }`: where and how generated code runs.

    precision: fp32, or bf16/fp16 autocast (fp16 with a gradient scaler, CUDA only).
    compile: wrap the training model in torch.compile. kernels: `triton` replaces the
    SDPA-output gate with a fused Triton kernel (forward and backward). strategy/devices:
    single-process, or DDP over `devices` processes per node (gloo on CPU, nccl on CUDA).
    ensemble: `auto` trains the runs that differ only in seed or in scalar settings (the
    objective's `ensemble_fields`) as one vectorized ensemble per process; a number caps
    the members of one ensemble; `off` (default) trains each run in its own loop.
    """

    device: Literal["cpu", "cuda"] = Field("cpu", json_schema_extra=STRUCTURAL)
    precision: Literal["fp32", "bf16", "fp16"] = Field("fp32", json_schema_extra=STRUCTURAL)
    compile: bool = Field(False, json_schema_extra=STRUCTURAL)
    kernels: Literal["eager", "triton"] = Field("eager", json_schema_extra=STRUCTURAL)
    # ddp: torch.distributed data parallelism, launched through torchrun; `devices` processes
    # per node, each training on batch_size / (devices x nodes) of every batch.
    strategy: Literal["single", "ddp"] = Field("single", json_schema_extra=STRUCTURAL)
    devices: Annotated[int, Field(ge=1, le=1024)] = 1
    # Torch threads per run (per rank under DDP); 0: the one default every launcher applies (1).
    threads: Annotated[int, Field(ge=0, le=1024)] = 0
    ensemble: Annotated[str | int, PlainValidator(_ensemble)] = Field(
        "off", json_schema_extra=STRUCTURAL
    )


def _shown(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _supported(objective: Objective) -> Iterator[Any]:
    support = objective.target

    def rule(spec: ir.Spec) -> Iterator[Diagnostic]:
        reported: set[tuple[str, Any]] = set()
        for run in spec.runs:
            target = run.config.target
            for name in ("precision", "compile", "kernels", "strategy"):
                value, allowed = getattr(target, name), getattr(support, name)
                if value in allowed or (name, value) in reported:
                    continue
                reported.add((name, value))
                choices = ", ".join(f"`{_shown(v)}`" for v in allowed)
                yield Diagnostic(
                    f"`objective {objective.kind}` does not support "
                    f"`target.{name} = {_shown(value)}`",
                    target.span_of(name),
                    help=f"`objective {objective.kind}` supports `{name}` = {choices}",
                )
        for name in ("precision", "compile", "kernels", "ensemble"):
            values = {getattr(run.config.target, name) for run in spec.runs}
            if len(values) > 1 and name not in support.variable:
                span = next(
                    run.config.target.span_of(name)
                    for run in spec.runs
                    if getattr(run.config.target, name) != getattr(spec.config.target, name)
                )
                yield Diagnostic(
                    f"`target.{name}` cannot differ between runs of `objective {objective.kind}`",
                    span,
                    help="split the runs into separate specs",
                )

    yield rule


def _ddp_splits_the_batch(objective: Objective) -> Iterator[Any]:
    paths = objective.target.ddp_batch

    def rule(spec: ir.Spec) -> Iterator[Diagnostic]:
        for run in spec.runs:
            target = run.config.target
            if target.devices > 1 and target.strategy != "ddp":
                yield Diagnostic(
                    f"`target.devices = {target.devices}` needs `strategy = ddp`",
                    target.span_of("devices"),
                    help="add `strategy = ddp` to the target block",
                )
            if target.strategy != "ddp":
                continue
            for path in paths:
                owner: Any = run.config
                for name in path[:-1]:
                    owner = getattr(owner, name)
                batch = getattr(owner, path[-1])
                if batch % target.devices:
                    yield Diagnostic(
                        f"`{'.'.join(path)}` ({batch}) must split evenly over "
                        f"`target.devices` ({target.devices})",
                        owner.span_of(path[-1]),
                    )

    yield rule


def _fp16_needs_cuda(spec: ir.Spec) -> Iterator[Diagnostic]:
    for run in spec.runs:
        target = run.config.target
        if target.precision == "fp16" and target.device != "cuda":
            yield Diagnostic(
                "`target.precision = fp16` needs `target cuda` (CPU autocast runs bf16)",
                target.span_of("precision"),
                help="use `precision = bf16` on the CPU",
            )
            return


def _ensembles(objective: Objective, ensemble_objectives: Callable[[], list[str]]) -> Iterator[Any]:

    def rule(spec: ir.Spec) -> Iterator[Diagnostic]:
        target = spec.config.target
        if target.ensemble == "off":
            return
        where = target.span_of("ensemble")
        if not objective.target.ensemble:
            able = ensemble_objectives()
            yield Diagnostic(
                f"`objective {objective.kind}` does not train ensembles "
                f"(`target.ensemble = {target.ensemble}`)",
                where,
                help=f"ensembles train {', '.join(f'`objective {k}`' for k in able)}; "
                "remove `ensemble` to train each run on its own",
            )
            return
        # The vectorized step is the fp32 eager single-process one; the others would need
        # their own batched versions.
        plain = {"strategy": "single", "precision": "fp32", "compile": False, "kernels": "eager"}
        reported: set[str] = set()
        for run in spec.runs:
            for name, value in plain.items():
                chosen = getattr(run.config.target, name)
                if chosen == value or name in reported:
                    continue
                reported.add(name)
                yield Diagnostic(
                    f"`target.ensemble` trains fp32 eager single-process steps, not "
                    f"`target.{name} = {_shown(chosen)}`",
                    run.config.target.span_of(name),
                    help=f"remove `{name}` or `ensemble` from the target block",
                )

    yield rule


def target_rules(
    objective: Objective, ensemble_objectives: Callable[[], list[str]]
) -> tuple[Any, ...]:
    """The spec rules the target of a spec with this objective is checked by.
    `ensemble_objectives` names the objectives that train ensembles, for the error that
    says where they are."""
    return (
        *_supported(objective),
        *_ddp_splits_the_batch(objective),
        _fp16_needs_cuda,
        *_ensembles(objective, ensemble_objectives),
    )
