"""`model transformer { ... }`: a pre-norm transformer with the attention block's gates.

As a sequence model it is the decoder-only byte LM of next-token training and the RLVR
policy (rotary positions, causal attention, tied embeddings). As an image denoiser it is a
DiT (Peebles & Xie): p x p patches, fixed 2-D sin-cos positions, bidirectional attention,
blocks conditioned on the timestep by adaLN-Zero.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import Field

from expc.compiler import ir
from expc.compiler.components.architectures import attention
from expc.compiler.components.architectures.attention import Attention
from expc.compiler.components.base import Architecture
from expc.compiler.diagnostics import Diagnostic
from expc.compiler.ir import STRUCTURAL, Node


class Transformer(Node):
    """`model transformer { ... }`: `layers` blocks of attention and an MLP (`mlp_ratio`
    x width), `heads` heads, `norm` and `norm_layout` around each sublayer.

    As a sequence model: decoder-only, causal, rotary positions (`position`, `rope_base`),
    tied input/output embeddings. As an image denoiser (a DiT): `patch` x `patch` patches
    are the tokens, with fixed 2-D sin-cos positions and attention over every patch; the
    timestep embedding sets each block's shift, scale and residual gate (adaLN-Zero), and
    the norms have no affine parameters of their own; only `norm_layout = pre`.
    """

    family: Literal["transformer"] = Field("transformer", json_schema_extra=STRUCTURAL)
    layers: Annotated[int, Field(ge=1, le=1024)] = 4
    width: Annotated[int, Field(ge=1, le=65536)] = 128
    heads: Annotated[int, Field(ge=1, le=1024)] = 4
    mlp_ratio: Annotated[int, Field(ge=1, le=64)] = 4
    norm: Literal["rmsnorm", "layernorm"] = Field("rmsnorm", json_schema_extra=STRUCTURAL)
    # pre: x + f(norm(x)); post: norm(x + f(x)); sandwich: x + norm(f(norm(x))).
    norm_layout: Literal["pre", "post", "sandwich"] = Field("pre", json_schema_extra=STRUCTURAL)
    position: Literal["rope"] = Field(
        "rope", json_schema_extra={**STRUCTURAL, **ir.roles("sequence_model")}
    )
    rope_base: Annotated[float, Field(gt=1.0, le=1e9)] = Field(
        10000.0, json_schema_extra=ir.roles("sequence_model")
    )
    attention: Attention = Attention()
    # The side of the square patches a DiT cuts the image into (tokens: (size / patch)^2).
    patch: Annotated[int, Field(ge=1, le=64)] = Field(
        2, json_schema_extra=ir.roles("image_denoiser")
    )


def _heads_divide_width(config: Any) -> Iterator[Diagnostic]:
    model = config.model
    if model.width % model.heads:
        yield Diagnostic(
            f"`model.width` ({model.width}) is not divisible by `model.heads` ({model.heads})",
            model.span_of("heads"),
            help=f"choose heads among {_divisors(model.width)}",
        )


def _role(config: Any) -> str:
    """The kind of network the spec's objective uses the transformer as."""
    from expc.compiler.components import registry  # the registry imports this module

    return registry.for_config(config).objective.needs


def _rope_needs_even_head_dim(config: Any) -> Iterator[Diagnostic]:
    model = config.model
    head_dim, remainder = divmod(model.width, model.heads)
    sequence = _role(config) == "sequence_model"
    if sequence and not remainder and model.position == "rope" and head_dim % 2:
        yield Diagnostic(
            f"rotary embeddings need an even head size, but width {model.width} / "
            f"heads {model.heads} = {head_dim}",
            model.span_of("heads"),
            help="change `model.width` or `model.heads`",
        )


def _patches_tile_the_image(config: Any) -> Iterator[Diagnostic]:
    model, size = config.model, getattr(config.data, "size", 0)
    if _role(config) == "image_denoiser" and size and size % model.patch:
        fits = [p for p in range(1, min(size, 64) + 1) if size % p == 0]
        yield Diagnostic(
            f"a DiT cuts the image into `model.patch` x `model.patch` patches, but image "
            f"size {size} is not divisible by patch {model.patch}",
            model.span_of("patch") if "patch" in model.field_spans else config.data.span_of("size"),
            help=f"choose patch among {', '.join(map(str, fits[-6:]))}",
        )


def _dit_is_pre_norm(config: Any) -> Iterator[Diagnostic]:
    model = config.model
    if _role(config) == "image_denoiser" and model.norm_layout != "pre":
        yield Diagnostic(
            f"`model.norm_layout = {model.norm_layout}` is not implemented for a transformer "
            "used as an image denoiser (a DiT): its adaLN-Zero blocks are pre-norm",
            model.span_of("norm_layout"),
            help="use `norm_layout = pre`, or remove it",
        )


def _divisors(n: int) -> str:
    found = [d for d in range(1, min(n, 64) + 1) if n % d == 0]
    return ", ".join(map(str, found[-6:]))


ARCHITECTURE = Architecture(
    family="transformer",
    node=Transformer,
    provides={
        "sequence_model": {"model.py": "architectures/transformer.py.j2"},
        "image_denoiser": {"model.py": "architectures/dit.py.j2"},
    },
    run_rules=(
        _heads_divide_width,
        _rope_needs_even_head_dim,
        _patches_tile_the_image,
        _dit_is_pre_norm,
    ),
    spec_rules=attention.SPEC_RULES,
    variable_structure=attention.VARIABLE_STRUCTURE | {("model", "norm"), ("model", "norm_layout")},
    metrics=attention.PROBE_METRICS,
    extra_templates=attention.triton_kernels,
)
