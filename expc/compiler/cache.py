"""An on-disk cache for pure, deterministic compile steps (parser tables, template bytecode,
formatter output), so repeated `expc compile` runs stay sub-second. Deleting it is always
safe; EXPC_NO_CACHE=1 turns it off."""

from __future__ import annotations

import os
from pathlib import Path

from expc import __version__


def cache_dir() -> Path | None:
    if os.environ.get("EXPC_NO_CACHE"):
        return None
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    path = base / "expc" / __version__
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return path
