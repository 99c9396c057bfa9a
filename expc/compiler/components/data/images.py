"""`data shapes { ... }` and `data images { ... }`: n training images and a held-out set;
yields images."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import Field

from expc.compiler.components.base import DataSource
from expc.compiler.diagnostics import Diagnostic
from expc.compiler.ir import STRUCTURAL, Node, input_file


class ImageData(Node):
    """`data shapes { ... }` or `data images { path = "..." ... }`: n training images and a
    disjoint held-out set, pixels scaled to [-1, 1].

    shapes: the procedural family, generated offline. Each image is a shaded background with
    `shapes` anti-aliased discs, squares or bars of random position, size, angle and
    brightness, drawn from its own generator seeded by (seed, stream, index): the training
    set is the first `n` images (nested in n), the held-out set `held_out` images of a
    separate stream.

    images: a folder of PNGs or a .npy array (N, H, W[, C]) at `path`, shuffled once by
    `seed`; the last `held_out` images are held out and the first `n` of the rest train
    (nested in n). `size` > 0 centre-crops and resizes PNGs (a .npy array must already have
    that size); 0 keeps them as they are. uint8 pixels are read as 0..255, float pixels as
    [0, 1] (or [-1, 1] when negative values occur).
    """

    kind: Literal["shapes", "images"] = Field("shapes", json_schema_extra=STRUCTURAL)
    # A folder of PNGs or a .npy file (expc/runtime/diffusion/data.py: load_images); "" (the
    # default, `data shapes`) names nothing.
    path: Annotated[str, Field(max_length=4096)] = Field(
        "", json_schema_extra=input_file(folder=True, suffixes=(".npy",))
    )
    n: Annotated[int, Field(ge=2, le=10**7)] = 64
    held_out: Annotated[int, Field(ge=2, le=10**7)] = 512
    size: Annotated[int, Field(ge=0, le=1024)] = 16
    channels: Annotated[int, Field(ge=1, le=3)] = 1
    shapes: Annotated[int, Field(ge=1, le=16)] = 2
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)] = 0


def _data_fields_fit_the_kind(config: Any) -> Iterator[Diagnostic]:
    data = config.data
    if data.channels == 2:
        yield Diagnostic(
            "`data.channels` must be 1 (grey) or 3 (RGB), got 2", data.span_of("channels")
        )
    if data.kind == "images" and not data.path:
        yield Diagnostic(
            "`data images` needs a `path`: a folder of .png files or a .npy array",
            data.span_of("kind"),
            help='for example `path = "data/faces.npy"`',
        )
    if data.kind == "shapes":
        if data.path:
            yield Diagnostic(
                "`path` belongs to `data images`; `data shapes` generates its images",
                data.span_of("path"),
                help="remove `path`, or write `data images`",
            )
        if data.size < 4:
            yield Diagnostic(
                f"`data shapes` needs `size` >= 4 pixels, got {data.size}", data.span_of("size")
            )


DATA = DataSource(
    kinds=("shapes", "images"),
    node=ImageData,
    yields=frozenset({"images"}),
    run_rules=(_data_fields_fit_the_kind,),
)
