"""A ccache-style cache of whole compile results, consulted before the compiler is imported.

The key covers every input of compilation: the spec text and the name it is shown under,
expc's version, the bytes of the compiler, templates and grammar, and the ruff binary.
A hit returns the same files a full compile would; a miss compiles and stores. Only the
standard library is imported here, so a fully cached `expc compile` skips loading pydantic,
Lark and Jinja. EXPC_NO_CACHE=1 turns it off.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import cache
from pathlib import Path

from expc import __version__
from expc.compiler.cache import cache_dir

_PACKAGE = Path(__file__).resolve().parent.parent


@cache
def _toolchain_digest() -> str:
    digest = hashlib.sha256(__version__.encode())
    sources = [_PACKAGE / "__init__.py"]
    for folder in ("compiler", "templates", "grammar"):
        sources += sorted(p for p in (_PACKAGE / folder).rglob("*") if p.is_file())
    for path in sources:
        if "__pycache__" in path.parts:
            continue
        digest.update(path.relative_to(_PACKAGE).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    from ruff.__main__ import find_ruff_bin

    ruff = Path(find_ruff_bin()).stat()
    digest.update(f"ruff:{ruff.st_size}:{ruff.st_mtime_ns}".encode())
    return digest.hexdigest()


def _path(name: str, text: str, where: str) -> Path | None:
    # `where` (the spec's absolute path) is in the key: the same spec text in two folders
    # may extend two different files of the same relative name.
    directory = cache_dir()
    if directory is None:
        return None
    key = hashlib.sha256(
        f"{_toolchain_digest()}\0{name}\0{where}\0".encode() + text.encode("utf-8", "surrogatepass")
    ).hexdigest()
    return directory / "results" / f"{key}.json"


def _unchanged(dependencies: dict[str, str], where: str = "") -> bool:
    """Whether every other file the compile read (extended or referenced specs) still has
    the text it had: a spec's text alone does not key a compile that read other files. A
    file outside what the project root now allows is a miss: compiling again refuses it."""
    from expc.compiler.source import read_spec_text
    from expc.safe_read import policy_for

    policy = policy_for(Path(where) if where else None)
    for file, sha in dependencies.items():
        if not policy.permits(Path(file)):
            return False
        try:  # hashed as SourceFile.sha256 hashes it: the text as read, newlines normalised
            data = read_spec_text(Path(file)).encode("utf-8", "surrogatepass")
        except (OSError, UnicodeDecodeError):
            return False
        if hashlib.sha256(data).hexdigest() != sha:
            return False
    return True


def load(name: str, text: str, where: str = "") -> tuple[str, dict[str, str]] | None:
    """(experiment name, files) compiled earlier from exactly these inputs, if any."""
    path = _path(name, text, where)
    if path is None or not path.exists():
        return None
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
        if not _unchanged(entry.get("dependencies", {}), where):
            return None
        return entry["experiment"], entry["files"]
    except (OSError, ValueError, KeyError, AttributeError):
        return None


def store(
    name: str,
    text: str,
    experiment: str,
    files: dict[str, str],
    dependencies: dict[str, str] | None = None,
    where: str = "",
) -> None:
    path = _path(name, text, where)
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    entry = {"experiment": experiment, "files": files, "dependencies": dependencies or {}}
    tmp.write_text(json.dumps(entry), encoding="utf-8")
    os.replace(tmp, path)
