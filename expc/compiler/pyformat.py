"""Stage 5: format generated Python with the pinned ruff, in one process for all files."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import tempfile
from importlib.metadata import version
from pathlib import Path

from ruff.__main__ import find_ruff_bin

from expc.compiler.cache import cache_dir
from expc.compiler.diagnostics import CompileError, Diagnostic

RUFF_VERSION = version("ruff")


def ruff_format(files: dict[str, str]) -> dict[str, str]:
    """Format every file, reusing cached results for text formatted before."""
    directory = cache_dir()
    if directory is None:
        return _ruff_format(files)
    keys = {
        name: hashlib.sha256(f"{RUFF_VERSION}\0{name}\0{text}".encode()).hexdigest()
        for name, text in files.items()
    }
    done: dict[str, str] = {}
    for name, key in keys.items():
        with contextlib.suppress(OSError, UnicodeDecodeError):  # missing or unreadable
            done[name] = (directory / f"fmt-{key}.py").read_text(encoding="utf-8")
    fresh = _ruff_format({n: t for n, t in files.items() if n not in done})
    for name, text in fresh.items():
        tmp = directory / f"fmt-{keys[name]}.{os.getpid()}.tmp"
        try:
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, directory / f"fmt-{keys[name]}.py")
        except OSError:  # a full disk: the cache is an optimisation, never a failure
            with contextlib.suppress(OSError):
                tmp.unlink()
    return {name: done.get(name) or fresh[name] for name in files}


def _ruff_format(files: dict[str, str]) -> dict[str, str]:
    """Format every file with `ruff` (one process per step for the whole batch)."""
    if not files:
        return {}
    with tempfile.TemporaryDirectory(prefix="expc-format-") as tmp:
        root = Path(tmp)
        for name, text in files.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        # Sort imports (expc is first-party, as in this repository), then format.
        ruff = [find_ruff_bin()]
        options = ["--no-cache", "--isolated", "--line-length", "100", "--target-version", "py311"]
        isort = ["--config", "lint.isort.known-first-party = ['expc']", "--select", "I", "--fix"]
        result = subprocess.run(
            [*ruff, "check", *options, *isort, "--quiet", "."],
            cwd=root,
            capture_output=True,
            text=True,
        )
        if result.returncode == 0:
            result = subprocess.run(
                [*ruff, "format", *options, "."], cwd=root, capture_output=True, text=True
            )
        if result.returncode != 0:
            # A template produced invalid Python: an expc bug, not a user error.
            raise CompileError(
                [
                    Diagnostic(
                        "internal error: generated code is not valid Python (this is an expc bug)",
                        notes=(result.stderr.strip(),),
                    )
                ]
            )
        return {
            name: _allow_long_names((root / name).read_text(encoding="utf-8")) for name in files
        }


LINE_LIMIT = 100
HEADER_LINES = 3


def _allow_long_names(text: str) -> str:
    """ruff format keeps code within the limit; only a long spec path or name in the header,
    a docstring or a comment can exceed it. Then say so, file-wide, rather than fail lint."""
    lines = text.split("\n")
    if all(len(line) <= LINE_LIMIT for line in lines):
        return text
    note = "# ruff: noqa: E501 - a spec path or name here is longer than the line limit"
    return "\n".join([*lines[:HEADER_LINES], note, *lines[HEADER_LINES:]])
