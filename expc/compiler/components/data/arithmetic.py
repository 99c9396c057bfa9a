"""`data arithmetic { ... }`: generated arithmetic problems with an exact verifier; yields
verifiable problems."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from expc.compiler.components.base import DataSource
from expc.compiler.ir import STRUCTURAL, Node, roles


class ArithmeticData(Node):
    """`data arithmetic { ... }`: multi-step integer arithmetic with an exact verifier.

    A problem is `operands` numbers of `digits` digits joined by + (and - when `subtract`),
    e.g. the prompt `57+08-33=`; a worked solution is `57+08=65,65-33=32#32` and a newline.
    The verifier checks the answer after `#`. `noise`: the chance that each step of a
    pretraining demonstration slips (a units or tens digit off, carried through to the
    answer), so the base model solves a problem only some of the time. `test_fraction` of the
    problem space (by a hash of the prompt) is held out: training never sees those problems.
    """

    kind: Literal["arithmetic"] = Field("arithmetic", json_schema_extra=STRUCTURAL)
    operands: Annotated[int, Field(ge=2, le=16)] = 3
    digits: Annotated[int, Field(ge=1, le=9)] = 2
    subtract: bool = True
    noise: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.2
    test_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.1
    # As text (`objective next_token`): `demonstrations` worked solutions of training
    # problems, one a line, read in windows of `context` bytes; a tenth as many of the
    # held-out problems are the validation text.
    demonstrations: Annotated[int, Field(ge=10, le=10**8)] = Field(
        20_000, json_schema_extra=roles("text")
    )
    context: Annotated[int, Field(ge=2, le=65536)] = Field(64, json_schema_extra=roles("text"))


DATA = DataSource(
    kinds=("arithmetic",), node=ArithmeticData, yields=frozenset({"problems", "text"})
)
