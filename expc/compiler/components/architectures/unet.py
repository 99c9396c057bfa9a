"""`model unet { ... }`: a small DDPM U-Net; an image denoiser."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import Field

from expc.compiler.components.architectures import attention
from expc.compiler.components.architectures.attention import Attention
from expc.compiler.components.base import Architecture
from expc.compiler.diagnostics import Diagnostic
from expc.compiler.ir import STRUCTURAL, Node

HEADS = 4  # of every self-attention layer


class UNet(Node):
    """`model unet { ... }`: a small DDPM U-Net (Ho et al.; the paper's Unet.py scaled down).

    A sinusoidal time embedding of size `width`, expanded to 4 x width by an MLP, is added
    inside every residual block (GroupNorm, SiLU, 3x3 conv, twice, with dropout). Level i
    works at 1/2^i of the image size with width x channel_multipliers[i] channels and
    `res_blocks` residual blocks (the up path one more, taking the skips);
    `attention_levels[i]` adds self-attention (4 heads) after each block of level i;
    `mid_attention` adds it between the two residual blocks of the bottleneck.
    `attention { gate ... }` gates those attention layers as it gates a transformer's
    (X: the GroupNorm-ed pixels the attention reads).
    """

    family: Literal["unet"] = Field("unet", json_schema_extra=STRUCTURAL)
    width: Annotated[int, Field(ge=1, le=4096)] = 16
    channel_multipliers: tuple[Annotated[int, Field(ge=1, le=64)], ...] = Field(
        (1, 2), min_length=1, max_length=8, json_schema_extra=STRUCTURAL
    )
    attention_levels: tuple[bool, ...] = Field(
        (False, False), max_length=8, json_schema_extra=STRUCTURAL
    )
    mid_attention: bool = Field(False, json_schema_extra=STRUCTURAL)
    attention: Attention = Attention()
    res_blocks: Annotated[int, Field(ge=1, le=16)] = 1
    groups: Annotated[int, Field(ge=1, le=1024)] = 8
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0


def _attention_per_level(config: Any) -> Iterator[Diagnostic]:
    model = config.model
    if len(model.attention_levels) != len(model.channel_multipliers):
        yield Diagnostic(
            f"`model.attention_levels` has {len(model.attention_levels)} entries but "
            f"`channel_multipliers` has {len(model.channel_multipliers)} levels",
            model.span_of("attention_levels"),
            help="give one true/false per level, e.g. "
            f"`attention_levels = [{', '.join(['false'] * len(model.channel_multipliers))}]`",
        )


def _groups_divide_channels(config: Any) -> Iterator[Diagnostic]:
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


def _heads_divide_attended_channels(config: Any) -> Iterator[Diagnostic]:
    """The attention layers have 4 heads, so the channels they see must split into 4."""
    model = config.model
    # A list of the wrong length is _attention_per_level's error; zip what there is.
    pairs = zip(model.channel_multipliers, model.attention_levels, strict=False)
    levels = [multiplier for multiplier, on in pairs if on]
    if model.mid_attention:
        levels.append(model.channel_multipliers[-1])
    for multiplier in levels:
        channels = model.width * multiplier
        if channels % HEADS:
            yield Diagnostic(
                f"self-attention splits channels into {HEADS} heads, but width {model.width} "
                f"x {multiplier} = {channels} at an attention level",
                model.span_of("width"),
                help=f"choose a width that is a multiple of {HEADS}",
            )
            return


def _size_halves_per_level(config: Any) -> Iterator[Diagnostic]:
    size, levels = config.data.size, len(config.model.channel_multipliers)
    if size and size % 2 ** (levels - 1):
        yield Diagnostic(
            f"image size {size} cannot be halved {levels - 1} times "
            f"(one per level after the first)",
            config.data.span_of("size"),
            help=f"use a multiple of {2 ** (levels - 1)}",
        )


ARCHITECTURE = Architecture(
    family="unet",
    node=UNet,
    provides={"image_denoiser": {"model.py": "architectures/unet.py.j2"}},
    run_rules=(
        _attention_per_level,
        _groups_divide_channels,
        _size_halves_per_level,
        _heads_divide_attended_channels,
    ),
    spec_rules=attention.SPEC_RULES,
    variable_structure=attention.VARIABLE_STRUCTURE,
)
