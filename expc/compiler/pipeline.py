"""The compiler: spec text -> IR -> generated files. Never imports torch.

parse (parse.py) -> lower (lower.py) -> validate (validate.py)
  -> plan (plan.py) -> render (render.py, templates/) -> format (pyformat.py)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from expc.compiler import ir
from expc.compiler.diagnostics import CompileError, Diagnostic
from expc.compiler.include import Loaded, load
from expc.compiler.lower import OverrideSyntax, lower
from expc.compiler.parse import Assignment, SyntaxTree, parse
from expc.compiler.pyformat import ruff_format
from expc.compiler.reference import Resolver, Upstream
from expc.compiler.render import render
from expc.compiler.source import SourceFile
from expc.compiler.validate import validate
from expc.safe_read import scope


@dataclass
class Compiled:
    source: SourceFile
    spec: ir.Spec
    files: dict[str, str]  # path relative to the output folder -> formatted text
    warnings: list[Diagnostic] = field(default_factory=list)
    # Absolute path -> sha256 of every other file read (the specs it extends or references).
    dependencies: dict[str, str] = field(default_factory=dict)


def resolve(
    source: SourceFile,
    profile: str | None = None,
    overrides: tuple[OverrideSyntax, ...] = (),
) -> tuple[ir.Spec, list[Diagnostic]]:
    """Spec text -> validated IR (with a profile and `--set` overrides applied to each run)."""
    spec, warnings, _ = _resolve(source, profile, overrides)
    return spec, warnings


def _resolve(
    source: SourceFile,
    profile: str | None,
    overrides: tuple[OverrideSyntax, ...],
    stack: tuple[Path, ...] | None = None,
) -> tuple[ir.Spec, list[Diagnostic], Loaded]:
    """Load (with extends), resolve `run(...)` references, lower and validate one spec.
    `stack`: the specs whose references led here (to refuse reference cycles)."""
    if stack is None:
        stack = (source.path.resolve(),) if source.path is not None else ()
    with scope(source.path):
        return _resolve_in_scope(source, profile, overrides, stack)


def _resolve_in_scope(
    source: SourceFile,
    profile: str | None,
    overrides: tuple[OverrideSyntax, ...],
    stack: tuple[Path, ...],
) -> tuple[ir.Spec, list[Diagnostic], Loaded]:
    loaded = Loaded(layers=[], sources={source.name: source})
    try:
        loaded = load(source)
        resolver = Resolver(_upstream, stack, local=dict(loaded.sources))
        # Parse and resolve first: the references' files are part of the header's hash.
        spec = lower(loaded.layers, profile=profile, extra=overrides, resolver=resolver)
        loaded.also_read.update(resolver.read)
        spec = spec.model_copy(update={"sha256": loaded.sha256})
        warnings = validate(spec)
    except CompileError as error:
        # Errors in an extended spec say which `extends` line brought it in, and carry
        # every file read, so that the CLI can show their code frames.
        located = CompileError(loaded.locate(error.diagnostics))
        located.sources = {**getattr(error, "sources", {}), **loaded.sources}  # type: ignore[attr-defined]
        raise located from None
    return spec, loaded.locate(warnings), loaded


def _upstream(source: SourceFile, stack: tuple[Path, ...]) -> Upstream:
    """A referenced spec's IR (reference.py calls this, with the reference stack)."""
    spec, _, loaded = _resolve(source, None, (), stack)
    files = {s.name: s for s in [*(t.source for t in loaded.layers), *loaded.also_read.values()]}
    return Upstream(source, spec, files)


def compile_source(source: SourceFile, format: bool = True) -> Compiled:
    spec, warnings, loaded = _resolve(source, None, ())
    files = render(spec)
    formatted = ruff_format(files) if format else files
    return Compiled(source, spec, formatted, warnings, dependencies=loaded.dependencies())


def compile_path(path: Path) -> Compiled:
    return compile_source(SourceFile.read(path))


def parse_overrides(
    assignments: list[str], flag: str = "--set"
) -> tuple[tuple[OverrideSyntax, ...], list[SourceFile]]:
    """`--set path=value` strings -> overrides, each with a pseudo-source for error frames
    (named after the flag that gave it: `--set#2`, `--seeds`)."""
    found, sources = [], []
    for index, text in enumerate(assignments):
        path, sep, value = text.partition("=")
        name = f"{flag}#{index + 1}" if flag == "--set" else flag
        source = SourceFile(name, f"{path.strip()} = {value.strip()}")
        sources.append(source)
        if not sep or not path.strip():
            raise CompileError([Diagnostic(f"`--set {text}` is not of the form path=value", None)])
        tree: SyntaxTree = parse(source)
        (item,) = tree.items
        assert isinstance(item, Assignment)
        found.append(OverrideSyntax(item.path, item.path_span, item.value))
    return tuple(found), sources
