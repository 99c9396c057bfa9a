"""`attention { ... }`: the Gated Attention paper's output gates, one block for every family
that has attention (the transformer's layers, the U-Net's attention levels, a DiT).

The same spelling means the same thing everywhere: a gate multiplies a tensor Y by
act(X W), X being the attention input (after the pre-norm), so the gate is query-dependent.
The generated attention module, its probe statistics and the fused Triton kernel are written
once (templates/architectures/_attention.j2) and used by every such family.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from pydantic import Field

from expc.compiler import ir
from expc.compiler.diagnostics import Diagnostic
from expc.compiler.ir import STRUCTURAL, Node


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


def _gate_metric_needs_a_gate(spec: ir.Spec) -> Iterator[Diagnostic]:
    if "gate_score" in spec.config.metrics and all(
        run.config.model.attention.gate == "none" for run in spec.runs
    ):
        yield Diagnostic(
            "metric `gate_score` needs a gated attention in at least one run",
            spec.config.span_of(f"metrics[{spec.config.metrics.index('gate_score')}]"),
            help="set `model.attention.gate = elementwise` in a variant, or drop the metric",
        )


def _triton_needs_an_sdpa_gate(spec: ir.Spec) -> Iterator[Diagnostic]:
    triton = [run.config.target for run in spec.runs if run.config.target.kernels == "triton"]
    target = triton[0] if triton else spec.config.target
    if triton and not any(
        run.config.model.attention.gate != "none"
        and run.config.model.attention.gate_position == "sdpa"
        for run in spec.runs
    ):
        yield Diagnostic(
            "`target.kernels = triton` fuses the SDPA-output gate, but no run has one",
            target.span_of("kernels"),
            help="set `model.attention.gate` with `gate_position = sdpa`, or use `kernels = eager`",
        )


# Structural fields of the block that the templates can vary between runs.
VARIABLE_STRUCTURE = frozenset(
    {
        ("model", "attention", "gate"),
        ("model", "attention", "gate_position"),
        ("model", "attention", "gate_activation"),
    }
)
# Statistics the attention probe measures wherever an objective evaluates it.
PROBE_METRICS: dict[str, str] = {
    "first_token_attention": (
        "F-Attn: attention probability on position 0, averaged over layers, heads and "
        "query positions > 0 (the attention sink)"
    ),
    "max_activation": (
        "M-Act: max |hidden state| output by each layer, averaged over layers (massive activations)"
    ),
    "gate_score": "mean attention-gate value act(XW) (gated runs only)",
}
SPEC_RULES = (_gate_metric_needs_a_gate, _triton_needs_an_sdpa_gate)


def triton_kernels(spec: ir.Spec) -> dict[str, str]:
    """The fused gate kernel's file, when some run's target asks for Triton kernels."""
    triton = any(run.config.target.kernels == "triton" for run in spec.runs)
    return {"kernels.py": "targets/triton_gate.py.j2"} if triton else {}
