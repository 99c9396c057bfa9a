"""`data prompts { ... }`: open-ended prompts (built in, or a local file); yields prompts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import Field

from expc.compiler.components.base import DataSource
from expc.compiler.diagnostics import Diagnostic
from expc.compiler.ir import STRUCTURAL, Node, input_file

PathText = Annotated[str, Field(min_length=1, max_length=4096)]


# The built-in prompt set's categories (expc/runtime/hivemind/prompts.py).
CATEGORIES = (
    "creative_writing",
    "brainstorming",
    "advice",
    "opinion",
    "speculative",
    "alternative_styles",
    "alternative_perspectives",
    "recommendation",
)


class Prompts(Node):
    """`data prompts { ... }`: open-ended prompts.

    source: "builtin" (48 prompts written for expc in 8 categories: creative writing,
    brainstorming, advice, opinion, speculative, alternative styles and perspectives,
    recommendation) or a path to a .jsonl/.csv file (columns `prompt`/`query`/`text`,
    optional `id`, `category`; an Infinity-Chat export works as it is).
    categories: only these categories (empty: all). per_category: at most this many
    prompts of each category (0: all).
    """

    kind: Literal["prompts"] = Field("prompts", json_schema_extra=STRUCTURAL)
    source: PathText = Field(
        "builtin", json_schema_extra=input_file(("builtin",), suffixes=(".jsonl", ".csv"))
    )
    categories: tuple[str, ...] = Field((), json_schema_extra=STRUCTURAL)
    per_category: Annotated[int, Field(ge=0, le=100000)] = 0


def _known_categories(config: Any) -> Iterator[Diagnostic]:
    data = config.data
    unknown = [c for c in data.categories if c not in CATEGORIES]
    if data.source == "builtin" and unknown:
        yield Diagnostic(
            f"unknown prompt category `{unknown[0]}`",
            data.span_of("categories"),
            help="the built-in set has " + ", ".join(f"`{c}`" for c in CATEGORIES),
        )


DATA = DataSource(
    kinds=("prompts",), node=Prompts, yields=frozenset({"prompts"}), run_rules=(_known_categories,)
)
