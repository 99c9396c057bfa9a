"""Data sources that need no network: CPython's own docs, or a local file."""

from __future__ import annotations

from pathlib import Path

import torch

from expc.runtime.errors import RunError
from expc.safe_read import read_bounded

BUILTIN_CORPORA = ("pydoc_data.topics",)
# Bytes become int64 tokens (8x in memory): a larger corpus is a mistake (or /dev/zero).
MAX_CORPUS_BYTES = 256 << 20


def read_text_corpus(corpus: str) -> bytes:
    """UTF-8 bytes of a built-in corpus or of a local text file (relative to the cwd)."""
    if corpus == "pydoc_data.topics":
        # The English help text of every Python topic, shipped with CPython (~0.47 MB).
        from pydoc_data.topics import topics

        return "\n\n".join(topics[key] for key in sorted(topics)).encode("utf-8")
    path = Path(corpus)
    if not path.exists():
        raise RunError(
            f"corpus file {corpus!r} not found (relative paths are resolved from "
            f"{Path.cwd()}); use a text file or one of: {', '.join(BUILTIN_CORPORA)}"
        )
    try:
        data = read_bounded(path, MAX_CORPUS_BYTES, what="corpus file")
    except OSError as error:
        raise RunError(f"cannot read corpus file {corpus!r}: {error}") from None
    if len(data) < 1024:
        raise RunError(f"corpus file {corpus!r} has {len(data)} bytes; at least 1024 are needed")
    return data


def byte_splits(data: bytes, val_fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Bytes as tokens (0-255), split into a training head and a held-out tail of
    `val_fraction` of them."""
    tokens = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    split = int(len(tokens) * (1.0 - val_fraction))
    return tokens[:split].long(), tokens[split:].long()
