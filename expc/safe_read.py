"""Reading the files a spec names, when the spec may come from a stranger (a pull request
that CI runs `expc check` on). Stdlib only: used before the compiler is imported.

Two rules, the same at compile and at run time:

- `read_bounded` reads regular files only, and at most a limit: it opens with O_NONBLOCK
  (a FIFO without a writer does not block the open), checks the opened descriptor with
  `fstat` (not the path, which could be swapped in between), and reads at most limit + 1
  bytes, so `/dev/zero`, a named pipe, a socket or a file that grows while read cannot hang
  the compiler or exhaust its memory.
- every file a spec names lies inside its project root (`Policy`): the folder of the
  nearest `pyproject.toml` or `.git` above the spec, `--root DIR`, or else the spec's own
  folder; `--allow-path DIR` (repeatable) widens it. Symlinks are resolved before the check.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

MARKERS = ("pyproject.toml", ".git")


class Unreadable(OSError):
    """A file that is refused: not a regular file, or larger than the limit. `reason` (and
    `str()`) says which, as a phrase ("not a regular file (a character device)")."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_KINDS = (
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a folder"),
)


def _open_regular(path: Path | str, limit: int, what: str) -> int:
    """A descriptor of the regular file at `path`, checked (from the descriptor) to be at
    most `limit` bytes; Unreadable otherwise (the descriptor closed)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    descriptor = os.open(path, flags)
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            kind = next((name for test, name in _KINDS if test(info.st_mode)), "not a file")
            raise Unreadable(f"not a regular file ({kind})")
        if info.st_size > limit:
            raise Unreadable(f"{what} is {info.st_size:,} bytes; the limit is {limit:,}")
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


def check_regular(path: Path | str, limit: int, what: str = "file") -> int:
    """The size of the regular file at `path` if it is at most `limit` bytes; Unreadable
    otherwise. For files another library reads (a GGUF file, read by transformers)."""
    descriptor = _open_regular(path, limit, what)
    try:
        return os.fstat(descriptor).st_size
    finally:
        os.close(descriptor)


def read_bounded(path: Path | str, limit: int, what: str = "file") -> bytes:
    """The bytes of the regular file at `path`, at most `limit` of them; Unreadable if it is
    anything else or larger. OSError (FileNotFoundError, PermissionError) as `open` raises."""
    descriptor = _open_regular(path, limit, what)
    try:
        chunks, left = [], limit + 1
        while left > 0:
            chunk = os.read(descriptor, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        if len(data) > limit:
            raise Unreadable(f"{what} grew past the limit of {limit:,} bytes while read")
        return data
    finally:
        os.close(descriptor)


def find_root(spec: Path) -> Path:
    """The folder of the nearest `pyproject.toml` or `.git` at or above the spec's folder;
    the spec's own folder when there is neither."""
    folder = spec.resolve().parent
    for candidate in (folder, *folder.parents):
        if any((candidate / marker).exists() for marker in MARKERS):
            return candidate
    return folder


@dataclass(frozen=True)
class Policy:
    """Where the files a spec names may be: inside `root` or one of `allowed`."""

    root: Path
    allowed: tuple[Path, ...] = ()

    def permits(self, path: Path) -> bool:
        try:
            resolved = path.resolve()
        except (OSError, ValueError, RuntimeError):
            return False
        return any(resolved.is_relative_to(folder) for folder in (self.root, *self.allowed))

    def inside_root(self, path: Path) -> bool:
        try:
            return path.resolve().is_relative_to(self.root)
        except (OSError, ValueError, RuntimeError):
            return False

    def refusal(self, shown: str, path: Path | None = None) -> tuple[str, str]:
        """(message, help) for `path`, written `shown`, outside the root."""
        message = f"{shown} is outside the project root {self.root.as_posix()}"
        if path is not None:
            try:
                resolved = path.resolve()
            except (OSError, ValueError, RuntimeError):
                resolved = None
            if resolved is not None and resolved != Path(os.path.abspath(path)):
                message += f" (it resolves to {resolved.as_posix()})"
        help = (
            "a spec reads files inside its project (the folder of the nearest pyproject.toml "
            "or .git); pass `--allow-path DIR` (repeatable) or `--root DIR` to widen it"
        )
        return message, help


# What the command line set (`--root`, `--allow-path`), for every spec it compiles.
_root_override: Path | None = None
_allowed: tuple[Path, ...] = ()
_active: ContextVar[Policy | None] = ContextVar("expc_read_policy", default=None)


def configure(root: Path | None = None, allow: list[Path] | tuple[Path, ...] = ()) -> None:
    global _root_override, _allowed
    _root_override = root.resolve() if root is not None else None
    _allowed = tuple(Path(folder).resolve() for folder in allow)


def policy_for(spec: Path | None) -> Policy:
    """The policy in force (inside a `scope`), else the one for a spec at `spec` (None:
    text from stdin, whose root is found from the working directory)."""
    active = _active.get()
    if active is not None:
        return active
    if _root_override is not None:
        root = _root_override
    else:
        root = find_root(spec if spec is not None else Path.cwd() / "<stdin>")
    return Policy(root, _allowed)


@contextmanager
def scope(spec: Path | None) -> Iterator[Policy]:
    """The policy for everything read while compiling the spec at `spec`; nested scopes
    (the specs that `run(...)` references) keep the outer one."""
    active = _active.get()
    if active is not None:
        yield active
        return
    policy = policy_for(spec)
    token = _active.set(policy)
    try:
        yield policy
    finally:
        _active.reset(token)
