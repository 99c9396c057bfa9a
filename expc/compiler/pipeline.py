"""The compiler: spec text -> IR -> generated files. Never imports torch.

parse (parse.py) -> lower (lower.py) -> validate (validate.py)
  -> plan (plan.py) -> render (render.py, templates/) -> format (pyformat.py)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from expc.compiler import ir
from expc.compiler.diagnostics import CompileError, Diagnostic
from expc.compiler.lower import OverrideSyntax, lower
from expc.compiler.parse import Assignment, SyntaxTree, parse
from expc.compiler.pyformat import ruff_format
from expc.compiler.render import render
from expc.compiler.source import SourceFile
from expc.compiler.validate import validate


@dataclass
class Compiled:
    source: SourceFile
    spec: ir.Spec
    files: dict[str, str]  # path relative to the output folder -> formatted text
    warnings: list[Diagnostic] = field(default_factory=list)


def resolve(
    source: SourceFile,
    profile: str | None = None,
    overrides: tuple[OverrideSyntax, ...] = (),
) -> tuple[ir.Spec, list[Diagnostic]]:
    """Spec text -> validated IR (with a profile and `--set` overrides applied to each run)."""
    tree = parse(source)
    spec = lower(tree, profile=profile, extra=overrides)
    warnings = validate(spec)
    return spec, warnings


def compile_source(source: SourceFile, format: bool = True) -> Compiled:
    spec, warnings = resolve(source)
    files = render(spec)
    return Compiled(source, spec, ruff_format(files) if format else files, warnings)


def compile_path(path: Path) -> Compiled:
    return compile_source(SourceFile.read(path))


def parse_overrides(assignments: list[str]) -> tuple[tuple[OverrideSyntax, ...], list[SourceFile]]:
    """`--set path=value` strings -> overrides, each with a pseudo-source for error frames."""
    found, sources = [], []
    for index, text in enumerate(assignments):
        path, sep, value = text.partition("=")
        source = SourceFile(f"--set#{index + 1}", f"{path.strip()} = {value.strip()}")
        sources.append(source)
        if not sep or not path.strip():
            raise CompileError([Diagnostic(f"`--set {text}` is not of the form path=value", None)])
        tree: SyntaxTree = parse(source)
        (item,) = tree.items
        assert isinstance(item, Assignment)
        found.append(OverrideSyntax(item.path, item.path_span, item.value))
    return tuple(found), sources
