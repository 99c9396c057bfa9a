"""Compiler diagnostics in the rustc/Elm shape: message, location, code frame, help.

Every stage returns or raises these instead of Python exceptions, so a user mistake never
shows a traceback. Rendering is plain text (golden-tested) with optional rich styling.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from expc.compiler.source import SourceFile, Span

if TYPE_CHECKING:  # rich is imported when a diagnostic is rendered, not by every compile
    from rich.text import Text


@dataclass(frozen=True)
class Diagnostic:
    message: str
    span: Span | None = None
    help: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    severity: str = "error"

    def sort_key(self) -> tuple[str, int, int, str]:
        if self.span is None:
            return ("", 0, 0, self.message)
        return (self.span.file, self.span.line, self.span.column, self.message)


class CompileError(Exception):
    """Raised with every diagnostic a stage found; the CLI prints them all and exits 1."""

    def __init__(self, diagnostics: Iterable[Diagnostic]):
        unique = {(d.sort_key(), d.help): d for d in diagnostics}
        self.diagnostics = sorted(unique.values(), key=Diagnostic.sort_key)
        super().__init__("\n".join(d.message for d in self.diagnostics))


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """A help line naming the closest candidate, only when the match is clear."""
    matches = difflib.get_close_matches(word, sorted(set(candidates)), n=1, cutoff=0.6)
    return f"did you mean `{matches[0]}`?" if matches else None


def _highlight(line: str) -> Text:
    """The spec line coloured by the .exp Pygments lexer (plain text is unchanged)."""
    from rich.syntax import Syntax  # imported on the error path only: pygments is slow
    from rich.text import Text

    from expc.lexer import ExpLexer

    highlighted = Syntax("", lexer=ExpLexer(), theme="ansi_dark").highlight(line)
    if highlighted.plain.endswith("\n"):
        highlighted.right_crop(1)
    return highlighted if highlighted.plain == line else Text(line)


def render(diagnostic: Diagnostic, sources: dict[str, SourceFile]) -> Text:
    """Render one diagnostic as styled text; `str()` of the result is the golden form."""
    from rich.text import Text

    out = Text()
    out.append(diagnostic.severity, style="bold red")
    out.append(f": {diagnostic.message}\n", style="bold")
    span = diagnostic.span
    source = sources.get(span.file) if span else None
    if span is not None:
        gutter = " " * len(str(span.line))
        out.append(f"{gutter}--> ", style="blue")
        out.append(f"{span}\n")
        if source is not None and source.echo:
            line = source.line(span.line)
            width = (span.end_column - span.column) if span.end_line == span.line else 0
            width = max(1, min(width, len(line) - span.column + 1))
            out.append(f"{gutter} |\n", style="blue")
            out.append(f"{span.line} | ", style="blue")
            out.append_text(_highlight(line))
            out.append("\n")
            out.append(f"{gutter} | ", style="blue")
            out.append(" " * (span.column - 1) + "^" * width + "\n", style="bold red")
    for note in diagnostic.notes:
        out.append(" = note: ", style="blue")
        out.append(f"{note}\n")
    if diagnostic.help:
        out.append(" = help: ", style="blue")
        out.append(f"{diagnostic.help}\n")
    return out


def render_all(diagnostics: Iterable[Diagnostic], sources: dict[str, SourceFile]) -> Text:
    from rich.text import Text

    diagnostics = list(diagnostics)
    out = Text()
    for diagnostic in diagnostics:
        out.append_text(render(diagnostic, sources))
        out.append("\n")
    errors = sum(d.severity == "error" for d in diagnostics)
    if errors:
        out.append(f"{errors} error{'s' if errors != 1 else ''} found\n", style="bold red")
    return out
