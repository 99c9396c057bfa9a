"""`model transformer { ... }`: a pre-norm transformer with rotary positions and the
attention block's gates. As a sequence model it is the decoder-only byte LM of next-token
training and the RLVR policy.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import Field

from expc.compiler.components.architectures import attention
from expc.compiler.components.architectures.attention import Attention
from expc.compiler.components.base import Architecture
from expc.compiler.diagnostics import Diagnostic
from expc.compiler.ir import STRUCTURAL, Node


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


def _heads_divide_width(config: Any) -> Iterator[Diagnostic]:
    model = config.model
    if model.width % model.heads:
        yield Diagnostic(
            f"`model.width` ({model.width}) is not divisible by `model.heads` ({model.heads})",
            model.span_of("heads"),
            help=f"choose heads among {_divisors(model.width)}",
        )


def _rope_needs_even_head_dim(config: Any) -> Iterator[Diagnostic]:
    model = config.model
    head_dim, remainder = divmod(model.width, model.heads)
    if not remainder and model.position == "rope" and head_dim % 2:
        yield Diagnostic(
            f"rotary embeddings need an even head size, but width {model.width} / "
            f"heads {model.heads} = {head_dim}",
            model.span_of("heads"),
            help="change `model.width` or `model.heads`",
        )


def _divisors(n: int) -> str:
    found = [d for d in range(1, min(n, 64) + 1) if n % d == 0]
    return ", ".join(map(str, found[-6:]))


ARCHITECTURE = Architecture(
    family="transformer",
    node=Transformer,
    provides={"sequence_model": {"model.py": "architectures/transformer.py.j2"}},
    run_rules=(_heads_divide_width, _rope_needs_even_head_dim),
    spec_rules=attention.SPEC_RULES,
    variable_structure=attention.VARIABLE_STRUCTURE | {("model", "norm"), ("model", "norm_layout")},
    metrics=attention.PROBE_METRICS,
    extra_templates=attention.triton_kernels,
)
