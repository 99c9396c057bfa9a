"""`model generators { ... }`: a set of text generators to sample and compare (trained expc
sequence models, answer files, OpenAI-compatible endpoints). Nothing is trained."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import Field

from expc.compiler.components.architectures.pretrained import GGUF, PromptFormat, registry_names
from expc.compiler.components.base import Architecture
from expc.compiler.diagnostics import Diagnostic
from expc.compiler.ir import STRUCTURAL, Node, input_file, pretrained_model, run_folders

PathText = Annotated[str, Field(min_length=1, max_length=4096)]


# "MODEL@URL": the model name the endpoint knows, and its OpenAI base URL (ending in /v1).
ENDPOINT = re.compile(r"[^@\s]+@https?://\S+")


class Generators(Node):
    """`model generators { ... }`: whose answers are compared, any mix of four kinds.

    checkpoints: run folders of LMs trained by other expc experiments, sampled in-process and
    named `<experiment>/<run>`: references `run("gated_attention", "gated")` (checked when
    compiling; `expc run` trains them first) or paths ("runs/gated_attention/gated").
    pretrained: models of expc's registry (`expc models`), e.g. "smollm2-135m-instruct";
    gguf: local GGUF files of an architecture transformers reads. Both are sampled in-process;
    `format` says how they are asked (auto: a chat model through its chat template, a base
    model with the raw prompt; chat; raw).
    jsonl: files of answers you already have, one object a line with `prompt_id` (or the
    prompt text in `prompt`), `model` and `response` (or a list `responses`).
    endpoints: OpenAI-compatible servers as "MODEL@BASE_URL" (vLLM, llama.cpp, Ollama,
    `expc serve`), e.g. "qwen2.5-7b@http://127.0.0.1:8000/v1".
    api: `chat` (/chat/completions) or `completions`. concurrency, timeout_s, retries:
    per endpoint. samples_per_request: `n` of one request. max_context: prompt plus new
    bytes for checkpoints (the prompt keeps its end).
    """

    family: Literal["generators"] = Field("generators", json_schema_extra=STRUCTURAL)
    checkpoints: tuple[PathText, ...] = Field((), json_schema_extra=run_folders("sequence_model"))
    pretrained: tuple[PathText, ...] = Field(
        (), json_schema_extra={**STRUCTURAL, **pretrained_model()}
    )
    gguf: tuple[PathText, ...] = Field((), json_schema_extra=GGUF)
    format: PromptFormat = "auto"
    jsonl: tuple[PathText, ...] = Field((), json_schema_extra={**STRUCTURAL, **input_file()})
    endpoints: tuple[PathText, ...] = Field((), json_schema_extra=STRUCTURAL)
    api: Literal["chat", "completions"] = Field("chat", json_schema_extra=STRUCTURAL)
    concurrency: Annotated[int, Field(ge=1, le=256)] = 4
    timeout_s: Annotated[float, Field(gt=0.0, le=3600.0)] = 120.0
    retries: Annotated[int, Field(ge=0, le=20)] = 5
    samples_per_request: Annotated[int, Field(ge=1, le=256)] = 1
    max_context: Annotated[int, Field(ge=2, le=65536)] = 256


def _needs_a_generator(config: Any) -> Iterator[Diagnostic]:
    model = config.model
    if not (model.checkpoints or model.pretrained or model.gguf or model.jsonl or model.endpoints):
        yield Diagnostic(
            "`model generators` names no generator",
            model.span,
            help='add `checkpoints = [run("gated_attention", "gated")]`, '
            '`pretrained = ["smollm2-135m-instruct"]`, `gguf = [...]`, `jsonl = [...]` '
            'or `endpoints = ["MODEL@http://127.0.0.1:8000/v1"]`',
        )


def _endpoints_name_model_and_url(config: Any) -> Iterator[Diagnostic]:
    for endpoint in config.model.endpoints:
        if not ENDPOINT.fullmatch(endpoint):
            yield Diagnostic(
                f"endpoint `{endpoint}` is not of the form MODEL@BASE_URL",
                config.model.span_of("endpoints"),
                help='for example "qwen2.5-7b@http://127.0.0.1:8000/v1"',
            )


def _pretrained_are_known(config: Any) -> Iterator[Diagnostic]:
    yield from registry_names(config.model.pretrained, config.model.span_of("pretrained"))


ARCHITECTURE = Architecture(
    family="generators",
    node=Generators,
    provides={"generators": {}},
    run_rules=(_needs_a_generator, _endpoints_name_model_and_url, _pretrained_are_known),
)
