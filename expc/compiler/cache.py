"""An on-disk cache for pure, deterministic compile steps (parser tables, template bytecode,
formatter output, whole compile results), so repeated `expc compile` runs stay sub-second.
Deleting it is always safe; EXPC_NO_CACHE=1 turns it off. A cache folder that cannot be
written (a read-only home, a full disk) is not used: compiling works the same without it.
"""

from __future__ import annotations

import os
import tempfile
from functools import cache
from pathlib import Path

from expc import __version__


def cache_dir() -> Path | None:
    if os.environ.get("EXPC_NO_CACHE"):
        return None
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return _usable(base / "expc" / __version__)


@cache
def _usable(path: Path) -> Path | None:
    """`path`, created if need be, if a file can be written in it (asked once per process:
    permission bits alone do not say, e.g. for root or on a read-only mount)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError:
        return None
    return path
