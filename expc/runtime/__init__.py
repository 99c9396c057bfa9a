"""The small, stable API that generated code imports: the commodity plumbing.

Generated code holds the experiment-specific logic (model, objective, training loop,
evaluation); this package holds what every experiment needs the same way: reading data,
seeding, metric logging, checkpoints, progress, and the standalone command line.
It never imports the compiler.
"""

from expc.runtime.checkpoint import load_checkpoint, restore_rng, save_checkpoint
from expc.runtime.data import byte_splits, read_text_corpus
from expc.runtime.device import resolve_device
from expc.runtime.distributed import World, init_distributed
from expc.runtime.ensemble import Ensemble
from expc.runtime.errors import RunError
from expc.runtime.launch import apply_overrides, main
from expc.runtime.loop import (
    Constant,
    Precision,
    Stage,
    Training,
    WarmupCosine,
    fit,
    fit_ensemble,
)
from expc.runtime.metrics import MetricsLogger, read_metrics
from expc.runtime.progress import Progress
from expc.runtime.report import plot_attention_maps
from expc.runtime.seeding import configure_torch
from expc.runtime.stability import SpikeCounter

__all__ = [
    "byte_splits",
    "Constant",
    "Ensemble",
    "MetricsLogger",
    "Precision",
    "Progress",
    "RunError",
    "SpikeCounter",
    "Stage",
    "Training",
    "WarmupCosine",
    "World",
    "apply_overrides",
    "configure_torch",
    "fit",
    "fit_ensemble",
    "init_distributed",
    "load_checkpoint",
    "main",
    "plot_attention_maps",
    "read_metrics",
    "read_text_corpus",
    "resolve_device",
    "restore_rng",
    "save_checkpoint",
]
