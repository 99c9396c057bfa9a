"""Stage 3: cross-field rules that types alone cannot express.

Each rule looks at one resolved run (or the whole spec) and points its diagnostic at the
field to change, showing the values involved (as HCL does), so a rule broken by a variant
points at the variant's line. Rules that hold for every backend live here; each backend
adds its own (expc/compiler/backends/).
"""

from __future__ import annotations

from collections.abc import Iterator

from expc.compiler import backends, ir
from expc.compiler.diagnostics import CompileError, Diagnostic


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


def _fp16_needs_cuda(spec: ir.Spec) -> Iterator[Diagnostic]:
    target = spec.config.target
    if target.precision == "fp16" and target.device != "cuda":
        yield Diagnostic(
            "`target.precision = fp16` needs `target cuda` (CPU autocast runs bf16)",
            target.span_of("precision"),
            help="use `precision = bf16` on the CPU",
        )


RUN_RULES = (_devices_need_ddp,)
SPEC_RULES = (_fp16_needs_cuda,)


def validate(spec: ir.Spec) -> list[Diagnostic]:
    """Raise CompileError with every broken rule; return the warnings."""
    backend = backends.for_config(spec.config)
    found: list[Diagnostic] = []
    for run in spec.runs:
        for rule in (*RUN_RULES, *backend.run_rules):
            found.extend(rule(run.config))
    for spec_rule in (*backend.spec_rules, *SPEC_RULES):
        found.extend(spec_rule(spec))
    errors = [d for d in found if d.severity == "error"]
    if errors:
        raise CompileError(errors)
    return [d for d in found if d.severity != "error"]
