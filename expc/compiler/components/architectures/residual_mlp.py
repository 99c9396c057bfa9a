"""`model residual_mlp { ... }`: the residual MLP of the 1000-layer CRL paper; a vector
encoder (the CRL critic's encoders and actor)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import Field

from expc.compiler.components.base import Architecture
from expc.compiler.diagnostics import Diagnostic
from expc.compiler.ir import STRUCTURAL, Node


class ResidualMLP(Node):
    """`model residual_mlp { ... }`: the paper's residual MLP, used for the critic's
    encoders phi(s, a) and psi(g) and for the actor.

    Each network is Dense(width) -> norm -> activation, then `depth / block_layers`
    residual blocks, then a linear head. A block is `block_layers` x [Dense(width) -> norm
    -> activation] with a skip connection around all of them (added after the last
    activation). `depth` counts the Dense layers inside the blocks, as the paper does
    (depth 4 = one block; the input and output layers are not counted). The encoders end in
    a `representation`-wide Dense; the actor in a mean and a log-std head. `actor_depth`
    gives the actor a depth of its own (the official code's `actor_depth` and
    `critic_depth`); -1, the default, is `depth` for both.
    """

    family: Literal["residual_mlp"] = Field("residual_mlp", json_schema_extra=STRUCTURAL)
    depth: Annotated[int, Field(ge=0, le=4096)] = 4
    actor_depth: Annotated[int, Field(ge=-1, le=4096)] = -1
    width: Annotated[int, Field(ge=1, le=65536)] = 256
    block_layers: Annotated[int, Field(ge=1, le=64)] = 4
    representation: Annotated[int, Field(ge=1, le=65536)] = 64
    norm: Literal["layernorm", "rmsnorm", "none"] = Field("layernorm", json_schema_extra=STRUCTURAL)
    activation: Literal["swish", "relu"] = Field("swish", json_schema_extra=STRUCTURAL)
    skip: bool = Field(True, json_schema_extra=STRUCTURAL)


def _depth_is_whole_blocks(config: Any) -> Iterator[Diagnostic]:
    model = config.model
    for name in ("depth", "actor_depth"):
        depth = getattr(model, name)
        if depth >= 0 and depth % model.block_layers:
            below = depth - depth % model.block_layers
            yield Diagnostic(
                f"`model.{name}` ({depth}) must be a multiple of `model.block_layers` "
                f"({model.block_layers}): depth counts the Dense layers of whole residual "
                "blocks",
                model.span_of(name),
                help=f"use {below} or {below + model.block_layers}",
            )


ARCHITECTURE = Architecture(
    family="residual_mlp",
    node=ResidualMLP,
    provides={"vector_encoder": {"model.py": "architectures/residual_mlp.py.j2"}},
    run_rules=(_depth_is_whole_blocks,),
    variable_structure=frozenset({("model", "norm"), ("model", "activation"), ("model", "skip")}),
)
