"""Source files and spans: every IR node points back at the text it came from."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from expc.compiler.paths import display_name
from expc.safe_read import read_bounded

# The largest spec read (a generated sweep of thousands of variants is far below this).
MAX_SOURCE_BYTES = 256_000


def read_spec_text(path: Path) -> str:
    """A spec's text as `Path.read_text` gives it (UTF-8, newlines made `\\n`), read with a
    bound: a regular file of at most MAX_SOURCE_BYTES (safe_read.Unreadable otherwise)."""
    text = read_bounded(path, MAX_SOURCE_BYTES, what="spec").decode("utf-8")
    return text.replace("\r\n", "\n").replace("\r", "\n")


class Span(BaseModel):
    """A region of a spec file, 1-based lines and columns, end column exclusive."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    file: str
    line: int
    column: int
    end_line: int
    end_column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class SourceFile:
    """The text of one spec, the name to show for it, and where it was read from (None for
    text that came from elsewhere: stdin, `--set`). `extends` resolves relative to `path`.
    `echo`: whether diagnostics may print its lines (not for a file outside the project
    root, read because `--allow-path` allowed it)."""

    name: str
    text: str
    path: Path | None = None
    echo: bool = True

    @classmethod
    def read(cls, path: Path, echo: bool = True) -> SourceFile:
        """Read a spec: a regular file of at most MAX_SOURCE_BYTES (safe_read.Unreadable,
        an OSError, otherwise), UTF-8."""
        return cls(display_name(path), read_spec_text(path), path, echo)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8", "surrogatepass")).hexdigest()

    def line(self, number: int) -> str:
        lines = self.text.splitlines()
        return lines[number - 1] if 0 < number <= len(lines) else ""
