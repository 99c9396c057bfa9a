"""A Pygments lexer for .exp specs: colours code frames in error messages (through rich)
and `pygmentize -l expc`. Registered as a `pygments.lexers` entry point."""

from __future__ import annotations

from pygments.lexer import RegexLexer, bygroups
from pygments.token import (
    Comment,
    Error,
    Keyword,
    Name,
    Number,
    Operator,
    Punctuation,
    String,
    Whitespace,
)

__all__ = ["ExpLexer"]

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"


class ExpLexer(RegexLexer):
    name = "expc"
    aliases = ["expc", "exp"]
    filenames = ["*.exp"]
    mimetypes = ["text/x-expc"]

    tokens = {
        "root": [
            (r"\s+", Whitespace),
            (r"#.*?$", Comment.Single),
            (r'"', String.Double, "string"),
            (r"\b(true|false)\b", Keyword.Constant),
            (r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", Number),
            # `extends "base.exp"` and `remove train.warmup`: statements of their own.
            (
                rf"\b(remove)(\s+)({_NAME}(?:\.{_NAME})*)",
                bygroups(Keyword.Namespace, Whitespace, Name.Attribute),
            ),
            (r"\b(extends)\b", Keyword.Namespace),
            # A reference to another experiment's run: `run("gated_attention", "vanilla")`.
            (rf"({_NAME})(\s*)(\()", bygroups(Name.Function, Whitespace, Punctuation)),
            # A block header: `model transformer {` or `train {`.
            (
                rf"({_NAME})(\s+)({_NAME})(\s*)(\{{)",
                bygroups(Keyword, Whitespace, Name.Class, Whitespace, Punctuation),
            ),
            (rf"({_NAME})(\s*)(\{{)", bygroups(Keyword, Whitespace, Punctuation)),
            # The path of an assignment: `model.attention.gate =`.
            (
                rf"({_NAME}(?:\.{_NAME})*)(\s*)(=)",
                bygroups(Name.Attribute, Whitespace, Operator),
            ),
            (_NAME, Name.Constant),  # symbols: enum values such as `rmsnorm`
            (r"[{}\[\](),.]", Punctuation),
            (r".", Error),
        ],
        "string": [
            (r'\\["\\nt]', String.Escape),
            (r'[^"\\\n]+', String.Double),
            (r'"', String.Double, "#pop"),
            (r"\n", Error, "#pop"),
            (r"\\.", Error),
        ],
    }
