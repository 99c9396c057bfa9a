"""Stage 1: .exp text -> a syntax tree of blocks, assignments and values, each with its span.

The tree mirrors the text (it is what `expc fmt` prints back); it knows nothing about
experiments. Syntax errors are collected with Lark's error recovery so that one run reports
every broken line, not only the first.
"""

from __future__ import annotations

import base64
import hashlib
import io
import math
import re
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from typing import Literal

import lark
from lark import Token, Tree

from expc.compiler.cache import cache_dir
from expc.compiler.diagnostics import CompileError, Diagnostic
from expc.compiler.source import MAX_SOURCE_BYTES, SourceFile, Span

ValueKind = Literal["number", "string", "boolean", "symbol", "list", "call"]


@dataclass(frozen=True)
class Value:
    kind: ValueKind
    # int | float | str | bool | tuple[Value, ...] | Call (for `run("spec", "name")`)
    value: object
    text: str  # as written, so `expc fmt` keeps `1e-3` as `1e-3`
    span: Span

    def to_python(self) -> object:
        if self.kind == "list":
            return [item.to_python() for item in self.value]  # type: ignore[union-attr]
        return self.value


@dataclass(frozen=True)
class Call:
    """`name(arg, ...)`: the value form of a reference (`run("gated_attention", "vanilla")`).
    The grammar allows any name; lowering knows which ones mean something."""

    name: str
    name_span: Span
    args: tuple[Value, ...]


@dataclass(frozen=True)
class Assignment:
    path: tuple[str, ...]
    path_span: Span
    value: Value
    span: Span


@dataclass(frozen=True)
class Block:
    kind: str
    label: str | None
    items: tuple[Assignment | Block, ...]
    kind_span: Span
    label_span: Span | None
    span: Span


@dataclass(frozen=True)
class Extends:
    """`extends "other.exp"`: start from another spec (resolved by include.py)."""

    path: str
    path_span: Span
    span: Span


@dataclass(frozen=True)
class Remove:
    """`remove train.warmup`, `remove eval`, `remove variant.gated`: drop what an extended
    spec set (a field goes back to its default)."""

    path: tuple[str, ...]
    path_span: Span
    span: Span


Item = Assignment | Block | Remove


@dataclass(frozen=True)
class Comment:
    text: str
    line: int
    column: int


@dataclass(frozen=True)
class SyntaxTree:
    source: SourceFile
    items: tuple[Item | Extends, ...]
    comments: tuple[Comment, ...]

    @property
    def extends(self) -> tuple[Extends, ...]:
        return tuple(item for item in self.items if isinstance(item, Extends))


# What to call each terminal in "expected ..." messages.
_TERMINAL_NAMES = {
    "NAME": "a name",
    "NUMBER": "a number",
    "STRING": "a string",
    "LBRACE": "`{`",
    "RBRACE": "`}`",
    "LSQB": "`[`",
    "RSQB": "`]`",
    "EQUAL": "`=`",
    "DOT": "`.`",
    "COMMA": "`,`",
    "LPAR": "`(`",
    "RPAR": "`)`",
    "EXTENDS": "`extends`",
    "REMOVE": "`remove`",
    "TRUE": "`true`",
    "FALSE": "`false`",
    "$END": "end of file",
}
# A spec deeper than this is refused instead of exhausting Python's recursion limit.
MAX_NESTING = 64
MAX_SYNTAX_ERRORS = 20
# Specs are hand-written configuration: MAX_SOURCE_BYTES (source.py) bounds them.


_OPTIONS: dict[str, object] = {
    "parser": "lalr",
    "propagate_positions": True,
    "maybe_placeholders": False,
}


def _grammar() -> str:
    return resources.files("expc.grammar").joinpath("expc.lark").read_text(encoding="utf-8")


def tables_key(grammar: str) -> str:
    """What the parser's tables depend on: the grammar's text, the parser options and Lark's
    version (the tables are Lark's own classes' data)."""
    options = ",".join(f"{k}={v!r}" for k, v in sorted(_OPTIONS.items()))
    return hashlib.sha256(f"{lark.__version__}\0{options}\0{grammar}".encode()).hexdigest()


def dump_tables(parser: lark.Lark) -> bytes:
    buffer = io.BytesIO()
    parser.save(buffer)
    return buffer.getvalue()


def load_tables(data: bytes) -> lark.Lark | None:
    """The parser saved in `data`; None if that is not a saved parser (truncated, corrupt)."""
    try:
        return lark.Lark.load(io.BytesIO(data))
    except Exception:  # noqa: BLE001 - unpickling garbage can raise almost anything
        return None


def build_parser(grammar: str, cache: str | bool = False) -> lark.Lark:
    """The parser made from the grammar (through Lark's own cache file, if given)."""
    return lark.Lark(grammar, cache=cache, **_OPTIONS)  # type: ignore[arg-type]


def _shipped_parser(key: str) -> lark.Lark | None:
    """The parser from the tables shipped in parse_tables.py, if they are this grammar's."""
    try:
        from expc.compiler import parse_tables
    except ImportError:
        return None
    if getattr(parse_tables, "KEY", None) != key:
        return None  # the grammar, the options or Lark changed since they were built
    try:
        data = base64.b64decode(parse_tables.TABLES)
    except (AttributeError, TypeError, ValueError):
        return None
    return load_tables(data)


@cache
def _parser() -> lark.Lark:
    """The LALR parser. Making it from the grammar takes about 25 ms (Lark first compiles
    its own grammar of grammars), so its tables ship with expc, built from expc.lark by
    `python -m expc.compiler.parse`; they are used only while they match the grammar."""
    grammar = _grammar()
    parser = _shipped_parser(tables_key(grammar))
    if parser is not None:
        return parser
    # Lark keys its cache file by a hash of the grammar and options and rebuilds a stale or
    # unreadable one; one it cannot write, it does without.
    directory = cache_dir()
    return build_parser(grammar, str(directory / "grammar.lark-cache") if directory else False)


# Statements a user rarely means where something else is missing: left out of "expected".
_QUIET_TERMINALS = {"EXTENDS", "REMOVE"}


def _describe_expected(names: set[str]) -> str:
    names = (names - _QUIET_TERMINALS) or names
    described = sorted({_TERMINAL_NAMES.get(name, f"`{name.lower()}`") for name in names})
    if not described:
        return ""
    if len(described) == 1:
        return f"expected {described[0]}"
    return "expected " + ", ".join(described[:-1]) + f" or {described[-1]}"


def _token_span(source: SourceFile, token: Token) -> Span:
    return Span(
        file=source.name,
        line=token.line or 1,
        column=token.column or 1,
        end_line=token.end_line or token.line or 1,
        end_column=token.end_column or (token.column or 1) + 1,
    )


def _error_diagnostic(source: SourceFile, error: lark.exceptions.UnexpectedInput) -> Diagnostic:
    line, column = max(error.line, 1), max(error.column, 1)
    if isinstance(error, lark.exceptions.UnexpectedCharacters):
        char = source.text[error.pos_in_stream] if error.pos_in_stream < len(source.text) else ""
        span = Span(
            file=source.name, line=line, column=column, end_line=line, end_column=column + 1
        )
        if char == '"':
            return Diagnostic(
                "unterminated string",
                span,
                help='close the string with `"` on the same line',
            )
        return Diagnostic(f"unexpected character `{char}`", span)
    token = getattr(error, "token", None)
    expected = _describe_expected(set(getattr(error, "expected", ()) or ()))
    if token is None or token.type == "$END":
        end_line = source.text.count("\n") + 1
        end_col = len(source.text.rsplit("\n", 1)[-1]) + 1
        span = Span(
            file=source.name, line=end_line, column=end_col, end_line=end_line, end_column=end_col
        )
        return Diagnostic(f"unexpected end of file, {expected}", span, help=_eof_help(expected))
    span = _token_span(source, token)
    return Diagnostic(f"unexpected {_describe_token(token)}, {expected}", span)


def _eof_help(expected: str) -> str | None:
    return "a block is still open: add its closing `}`" if "`}`" in expected else None


def _describe_token(token: Token) -> str:
    if token.type in ("NAME", "NUMBER", "STRING"):
        return f"{_TERMINAL_NAMES[token.type].split(' ', 1)[1]} `{token}`"
    return f"`{token}`"


def parse(source: SourceFile, keep_comments: bool = False) -> SyntaxTree:
    """Parse a spec; raise CompileError with every syntax error found.

    Comments are collected only when asked for (by `expc fmt`): it costs a second lexing pass.
    The tree is immutable, so a file read again in one process (a spec that others extend
    or reference: `expc compile specs/` parses gated_attention.exp six times) is parsed once.
    """
    return _parse(source, keep_comments)


@lru_cache(maxsize=64)
def _parse(source: SourceFile, keep_comments: bool) -> SyntaxTree:
    size = len(source.text.encode("utf-8", "surrogatepass"))
    if size > MAX_SOURCE_BYTES:
        start = Span(file=source.name, line=1, column=1, end_line=1, end_column=2)
        raise CompileError(
            [
                Diagnostic(
                    f"spec is {size:,} bytes; the limit is {MAX_SOURCE_BYTES:,}",
                    start,
                    "is this the right file? split a huge sweep into several specs",
                )
            ]
        )
    _check_nesting(source)
    parser = _parser()
    diagnostics: list[Diagnostic] = []
    text = source.text
    tree = None
    # Report several syntax errors in one run: after each error, blank out the line it is
    # on (keeping every position) and parse again. Unlike token-skipping recovery this
    # does not cascade into echoes of the first error.
    for _ in range(MAX_SYNTAX_ERRORS):
        try:
            tree = parser.parse(text)
            break
        except lark.exceptions.UnexpectedInput as error:
            diagnostic = _error_diagnostic(source, error)
            diagnostics.append(diagnostic)
            lines = text.split("\n")
            index = diagnostic.span.line - 1  # type: ignore[union-attr]
            if index >= len(lines) or not lines[index].strip():
                break  # at the end of the file: nothing left to skip
            lines[index] = " " * len(lines[index])
            text = "\n".join(lines)
    if diagnostics:
        raise CompileError(diagnostics)
    assert tree is not None
    comments = []
    if keep_comments:
        comments = [
            Comment(str(t), t.line or 1, t.column or 1)
            for t in parser.lex(source.text, dont_ignore=True)
            if t.type == "COMMENT"
        ]
    builder = _TreeBuilder(source)
    items = tuple(builder.item(child) for child in tree.children)
    if builder.diagnostics:
        raise CompileError(builder.diagnostics)
    return SyntaxTree(source, items, tuple(comments))


def _check_nesting(source: SourceFile) -> None:
    """Refuse absurd nesting before the parser recurses into it."""
    depth = 0
    for line_number, line in enumerate(source.text.splitlines(), start=1):
        code = re.sub(r'"([^"\\\n]|\\.)*"|#.*', "", line)
        for column, char in enumerate(code, start=1):
            depth += char in "{["
            depth -= char in "}]"
            if depth > MAX_NESTING:
                span = Span(
                    file=source.name,
                    line=line_number,
                    column=column,
                    end_line=line_number,
                    end_column=column + 1,
                )
                raise CompileError(
                    [Diagnostic(f"blocks and lists nest deeper than {MAX_NESTING} levels", span)]
                )


class _TreeBuilder:
    def __init__(self, source: SourceFile):
        self.source = source
        self.diagnostics: list[Diagnostic] = []

    def span(self, tree: Tree) -> Span:
        meta = tree.meta
        return Span(
            file=self.source.name,
            line=meta.line,
            column=meta.column,
            end_line=meta.end_line,
            end_column=meta.end_column,
        )

    def item(self, tree: Tree) -> Item | Extends:
        if tree.data == "block":
            return self.block(tree)
        if tree.data == "extends":
            (token,) = tree.children
            return Extends(unescape(str(token)), _token_span(self.source, token), self.span(tree))
        if tree.data == "remove":
            (path_tree,) = tree.children
            return Remove(
                path=tuple(str(t) for t in path_tree.children),
                path_span=self.span(path_tree),
                span=self.span(tree),
            )
        return self.assignment(tree)

    def block(self, tree: Tree) -> Block:
        kind_token, *rest = tree.children
        label = None
        label_span = None
        if rest and isinstance(rest[0], Tree) and rest[0].data == "label":
            label_token = rest.pop(0).children[0]
            label, label_span = str(label_token), _token_span(self.source, label_token)
        return Block(
            kind=str(kind_token),
            label=label,
            items=tuple(self.item(child) for child in rest),  # type: ignore[misc]
            kind_span=_token_span(self.source, kind_token),
            label_span=label_span,
            span=self.span(tree),
        )

    def assignment(self, tree: Tree) -> Assignment:
        path_tree, value_tree = tree.children
        return Assignment(
            path=tuple(str(t) for t in path_tree.children),
            path_span=self.span(path_tree),
            value=self.value(value_tree),
            span=self.span(tree),
        )

    def value(self, tree: Tree) -> Value:
        span = self.span(tree)
        if tree.data == "list":
            items = tuple(self.value(child) for child in tree.children)
            text = self.source.text[tree.meta.start_pos : tree.meta.end_pos]
            return Value("list", items, text, span)
        if tree.data == "call":
            name, *args = tree.children
            call = Call(str(name), _token_span(self.source, name), tuple(map(self.value, args)))
            text = self.source.text[tree.meta.start_pos : tree.meta.end_pos]
            return Value("call", call, text, span)
        token = tree.children[0]
        text = str(token)
        if tree.data == "number":
            return Value("number", self._number(text, span), text, span)
        if tree.data == "string":
            return Value("string", unescape(text), text, span)
        if tree.data == "boolean":
            return Value("boolean", text == "true", text, span)
        return Value("symbol", text, text, span)

    def _number(self, text: str, span: Span) -> int | float:
        if re.fullmatch(r"[+-]?\d+", text):
            if len(text.lstrip("+-")) > 30:
                self.diagnostics.append(Diagnostic("number is too large", span))
                return 0
            return int(text)
        number = float(text)
        if not math.isfinite(number):
            self.diagnostics.append(Diagnostic("number is too large", span))
            return 0.0
        return number


_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t"}


def unescape(literal: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES[m.group(1)], literal[1:-1])


def escape(text: str) -> str:
    return (
        '"'
        + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
        + '"'
    )


def parse_value(text: str, origin: str) -> Value:
    """Parse one value written outside a spec (a `--set path=value` on the command line)."""
    source = SourceFile(origin, f"_ = {text}")
    tree = parse(source)
    (item,) = tree.items
    assert isinstance(item, Assignment)
    return item.value


_TABLES_DOC = (
    "The LALR tables of expc/grammar/expc.lark, as Lark saves them (base64 of its pickle).\n\n"
    "Generated by `python -m expc.compiler.parse`; do not edit. parse.py uses them only while\n"
    "KEY is the key of the grammar, the parser options and the installed Lark; otherwise it\n"
    "makes the parser from the grammar, so a stale file costs time, never correctness.\n"
)


def tables_module(grammar: str) -> str:
    """The text of parse_tables.py for `grammar`."""
    encoded = base64.encodebytes(dump_tables(build_parser(grammar))).decode("ascii")
    quotes = '"' * 3
    return (
        f"{quotes}{_TABLES_DOC}{quotes}\n\n"
        f'KEY = "{tables_key(grammar)}"\n'
        f"TABLES = {quotes}\\\n{encoded}{quotes}\n"
    )


if __name__ == "__main__":
    from pathlib import Path

    target = Path(__file__).with_name("parse_tables.py")
    target.write_text(tables_module(_grammar()), encoding="utf-8")
    print(f"wrote {target}")
