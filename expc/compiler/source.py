"""Source files and spans: every IR node points back at the text it came from."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from expc.compiler.paths import display_name


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
    text that came from elsewhere: stdin, `--set`). `extends` resolves relative to `path`."""

    name: str
    text: str
    path: Path | None = None

    @classmethod
    def read(cls, path: Path) -> SourceFile:
        return cls(display_name(path), path.read_text(encoding="utf-8"), path)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8", "surrogatepass")).hexdigest()

    def line(self, number: int) -> str:
        lines = self.text.splitlines()
        return lines[number - 1] if 0 < number <= len(lines) else ""
