"""Artificial Hivemind (Jiang et al., NeurIPS 2025): do a model's samples repeat each other,
and do different models answer alike? Prompts, response generators, sentence embeddings,
the paper's similarity measures and the report.

    prompts = builtin_prompts()
    responses = CheckpointGenerator("runs/gated_attention/gated").generate(prompts, PAPER_DEFAULT)
    embedder = Embedder(cache_path="runs/hivemind/embeddings.sqlite")
    analysis = analyze(prompts, responses, embedder.encode)
    write_report(analysis, Path("runs/hivemind"), title="hivemind")

sentence-transformers (the embedder) is imported only when an `Embedder` is made.
"""

from expc.runtime.hivemind.analysis import DEFAULT_THRESHOLDS, Analysis, PromptScore, analyze
from expc.runtime.hivemind.cache import DiskCache, cache_key
from expc.runtime.hivemind.embed import DEFAULT_EMBEDDER, Embedder
from expc.runtime.hivemind.generators import (
    CheckpointGenerator,
    Generator,
    PretrainedGenerator,
    SampledGenerator,
)
from expc.runtime.hivemind.http_client import GenerationError, GenerationStats, OpenAIEndpoint
from expc.runtime.hivemind.lm import Completion, LanguageModel, chat_prompt
from expc.runtime.hivemind.prompts import (
    BUILTIN_PROMPTS,
    CATEGORIES,
    Prompt,
    builtin_prompts,
    load_prompts,
    select_prompts,
)
from expc.runtime.hivemind.report import write_report
from expc.runtime.hivemind.responses import JsonlResponses, Response, group, write_responses
from expc.runtime.hivemind.settings import (
    PAPER_DEFAULT,
    PAPER_DIVERSE,
    PRESETS,
    SamplingSettings,
)

__all__ = [
    "BUILTIN_PROMPTS",
    "CATEGORIES",
    "DEFAULT_EMBEDDER",
    "DEFAULT_THRESHOLDS",
    "PAPER_DEFAULT",
    "PAPER_DIVERSE",
    "PRESETS",
    "Analysis",
    "CheckpointGenerator",
    "Completion",
    "DiskCache",
    "Embedder",
    "GenerationError",
    "GenerationStats",
    "Generator",
    "JsonlResponses",
    "LanguageModel",
    "OpenAIEndpoint",
    "PretrainedGenerator",
    "Prompt",
    "PromptScore",
    "Response",
    "SampledGenerator",
    "SamplingSettings",
    "analyze",
    "builtin_prompts",
    "cache_key",
    "chat_prompt",
    "group",
    "load_prompts",
    "select_prompts",
    "write_report",
    "write_responses",
]
