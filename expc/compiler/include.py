"""`extends "other.exp"`: a spec read together with every spec it builds on.

`load` parses a spec and, depth first, each file it extends (paths relative to the
extending file's folder), refusing missing files and cycles with located errors. The
result is a list of layers, the furthest ancestor first and the spec itself last: lowering
applies them in that order, so what a later layer writes overrides an earlier one. A file
reached twice (two parents extending one grandparent) is applied once, where first reached.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path

from expc.compiler.diagnostics import CompileError, Diagnostic
from expc.compiler.parse import SyntaxTree, parse
from expc.compiler.paths import display_name
from expc.compiler.source import SourceFile, Span
from expc.safe_read import Policy, scope

# Deeper chains are a mistake (or a generated cycle through symlinks), not a design.
MAX_DEPTH = 32


@dataclass
class Loaded:
    """A spec and everything it read: its layers, and the files behind them."""

    layers: list[SyntaxTree]
    # Every file read, by the name diagnostics show (for code frames).
    sources: dict[str, SourceFile] = field(default_factory=dict)
    # An included file's name -> the `extends` line that first read it.
    included_from: dict[str, Span] = field(default_factory=dict)
    # Files read for other reasons (the specs that `run(...)` references name), so that the
    # header's hash and the result cache cover them too.
    also_read: dict[str, SourceFile] = field(default_factory=dict)

    @property
    def root(self) -> SyntaxTree:
        return self.layers[-1]

    @property
    def sha256(self) -> str:
        """The hash in the do-not-edit header. For a spec that reads no other file it is the
        spec text's own hash (so existing headers keep theirs); otherwise it covers every
        file read, so editing any of them makes the generated code stale."""
        files = self.files()
        if len(files) == 1:
            return self.root.source.sha256
        digest = hashlib.sha256()
        for name, sha in sorted(files.items()):
            digest.update(f"{name}\0{sha}\n".encode("utf-8", "surrogatepass"))
        return digest.hexdigest()

    def files(self) -> dict[str, str]:
        """name -> sha256 of every file this spec's compilation read."""
        read = [*(t.source for t in self.layers), *self.also_read.values()]
        return {source.name: source.sha256 for source in read}

    def dependencies(self) -> dict[str, str]:
        """Absolute path -> sha256 of every file read besides the spec itself (what the
        result cache must check before it reuses a compile)."""
        read = [*(t.source for t in self.layers[:-1]), *self.also_read.values()]
        return {str(s.path.resolve()): s.sha256 for s in read if s.path is not None}

    def locate(self, diagnostics: list[Diagnostic]) -> list[Diagnostic]:
        """Add "included from FILE:LINE" notes to diagnostics inside extended files."""
        located = []
        for diagnostic in diagnostics:
            notes, name, seen = [], diagnostic.span.file if diagnostic.span else None, set()
            while name in self.included_from and name not in seen:
                seen.add(name)
                span = self.included_from[name]
                notes.append(f"included from {span.file}:{span.line}")
                name = span.file
            if notes:
                diagnostic = replace(diagnostic, notes=(*diagnostic.notes, *notes))
            located.append(diagnostic)
        return located


def _read(path: Path, at: Span, echo: bool = True) -> SourceFile:
    try:
        return SourceFile.read(path, echo=echo)
    except FileNotFoundError:
        raise CompileError(
            [
                Diagnostic(
                    f"no spec file at {display_name(path)}",
                    at,
                    help="paths in `extends` are relative to the folder of the spec that "
                    "writes them",
                )
            ]
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        message = f"cannot read {display_name(path)}: {reason}"
        raise CompileError([Diagnostic(message, at)]) from None


def _not_a_spec(written: str, at: Span, why: str) -> CompileError:
    return CompileError(
        [
            Diagnostic(
                f'"{written}" is not an .exp spec',
                at,
                help=f"{why}; `extends` takes another spec",
            )
        ]
    )


def _permitted(policy: Policy, folder: Path, target: Path, written: str, at: Span) -> None:
    if not policy.permits(target):
        message, help = policy.refusal(f'"{written}"', folder / written)
        raise CompileError([Diagnostic(message, at, help=help)])


def load(source: SourceFile, keep_comments: bool = False) -> Loaded:
    """Parse a spec and every spec it extends; raise CompileError with located errors.

    What a spec extends must lie inside its project root (safe_read.Policy), end in `.exp`
    and parse: a file that is not a spec (a `.env` of secrets) gets one error at the
    `extends` line, and none of its lines is shown."""
    with scope(source.path) as policy:
        return _load(source, keep_comments, policy)


def _load(source: SourceFile, keep_comments: bool, policy: Policy) -> Loaded:
    loaded = Loaded(layers=[])
    done: set[Path] = set()

    def visit(
        source: SourceFile,
        stack: list[tuple[Path | None, str]],
        via: tuple[str, Span] | None = None,
    ) -> None:
        loaded.sources[source.name] = source
        try:
            tree = parse(source, keep_comments=keep_comments)
        except CompileError as error:
            first = error.diagnostics[0].span if error.diagnostics else None
            if via is not None and (first is None or first.line <= 1 or not source.echo):
                # Its first line is not a spec's: say so, never quote it.
                error = _not_a_spec(*via, "its first line does not parse as one")
            raise CompileError(loaded.locate(error.diagnostics)) from None
        # Relative to the file; text without one (stdin) has a name relative to the cwd.
        folder = (source.path or Path.cwd() / source.name).parent
        for item in tree.extends:
            try:
                target = (folder / item.path).resolve()
            except (OSError, ValueError):  # a NUL byte, a name too long for the OS
                error = Diagnostic("not a usable file path", item.path_span)
                raise CompileError(loaded.locate([error])) from None
            chain = [name for _, name in stack]
            if any(path == target for path, _ in stack):
                first = next(name for path, name in stack if path == target)
                cycle = " -> ".join([*chain[chain.index(first) :], first])
                error = Diagnostic(
                    f"`extends` cycle: {cycle}",
                    item.path_span,
                    help="a spec cannot extend itself, directly or through others",
                )
                raise CompileError(loaded.locate([error]))
            if len(stack) >= MAX_DEPTH:
                error = Diagnostic(f"`extends` chain deeper than {MAX_DEPTH} specs", item.span)
                raise CompileError(loaded.locate([error]))
            if target in done:
                continue
            try:
                _permitted(policy, folder, target, item.path, item.path_span)
                if target.suffix != ".exp":
                    raise _not_a_spec(item.path, item.path_span, "its name does not end in .exp")
                child = _read(target, item.path_span, echo=policy.inside_root(target))
            except CompileError as error:
                raise CompileError(loaded.locate(error.diagnostics)) from None
            loaded.included_from.setdefault(child.name, item.span)
            visit(child, [*stack, (target, child.name)], (item.path, item.path_span))
        loaded.layers.append(tree)
        if source.path is not None:
            done.add(source.path.resolve())

    root_path = source.path.resolve() if source.path is not None else None
    visit(source, [(root_path, source.name)])
    return loaded
