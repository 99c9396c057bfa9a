"""How spec paths are shown (stdlib only: used before the compiler is imported)."""

from __future__ import annotations

from pathlib import Path


def display_name(path: Path) -> str:
    """The path relative to the working directory when inside it: generated code and error
    messages must not depend on where a checkout lives. Outside it, the absolute path: a
    bare file name would not say which file an error is in."""
    resolved = path.resolve()
    try:
        return resolved.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return resolved.as_posix()
