"""`data text { ... }`: a byte-level text corpus; yields text."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from expc.compiler.components.base import DataSource
from expc.compiler.ir import STRUCTURAL, Node, input_file


class TextData(Node):
    """`data text { ... }`: a byte-level text corpus (vocabulary of 256 bytes).

    `corpus` is the built-in "pydoc_data.topics" (the English text shipped with CPython) or
    a path to a local UTF-8 text file, relative to the directory `expc run` is started in.
    `bos = true` starts every window with a beginning-of-sequence token (id 256, so the
    vocabulary has 257 tokens): the same token at position 0 of every training and
    evaluation window, where attention sinks form in the literature, instead of whichever
    byte a random crop starts on.
    """

    kind: Literal["text"] = Field("text", json_schema_extra=STRUCTURAL)
    corpus: Annotated[str, Field(min_length=1, max_length=4096)] = Field(
        "pydoc_data.topics", json_schema_extra=input_file(("pydoc_data.topics",))
    )
    context: Annotated[int, Field(ge=2, le=65536)] = 128
    val_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.1
    bos: bool = Field(False, json_schema_extra=STRUCTURAL)


DATA = DataSource(kinds=("text",), node=TextData, yields=frozenset({"text"}))
