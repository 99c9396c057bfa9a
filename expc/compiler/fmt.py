"""`expc fmt`: print a syntax tree in the one canonical layout, keeping every comment.

Two-space indentation, one item per line, `{}` for empty blocks, lists on one line unless
too long, strings re-escaped canonically, numbers as written. A single blank line is kept
where the author left one or more. Idempotent, and parse(format(x)) equals parse(x).
"""

from __future__ import annotations

from expc.compiler.parse import (
    Assignment,
    Block,
    Call,
    Comment,
    Extends,
    Remove,
    SyntaxTree,
    Value,
    escape,
)

INDENT = "  "
MAX_LINE = 100


class _Printer:
    def __init__(self, tree: SyntaxTree):
        self.comments = sorted(tree.comments, key=lambda c: (c.line, c.column))
        self.lines: list[str] = []
        self.last_line = 0  # last source line accounted for

    def take_comments(self, before_line: int) -> list[Comment]:
        taken = []
        while self.comments and self.comments[0].line < before_line:
            taken.append(self.comments.pop(0))
        return taken

    def trailing(self, line: int, after_column: int) -> str:
        if (
            self.comments
            and self.comments[0].line == line
            and self.comments[0].column >= after_column
        ):
            return " " + self.comments.pop(0).text.rstrip()
        return ""

    def gap(self, source_line: int, first: bool) -> None:
        if not first and source_line - self.last_line > 1:
            self.lines.append("")

    def leading(self, line: int, depth: int, first: bool) -> bool:
        for comment in self.take_comments(line):
            self.gap(comment.line, first)
            self.lines.append(INDENT * depth + comment.text.rstrip())
            self.last_line = comment.line
            first = False
        return first

    def items(self, items: tuple[Assignment | Block | Extends | Remove, ...], depth: int) -> None:
        first = True
        for item in items:
            first = self.leading(item.span.line, depth, first)
            self.gap(item.span.line, first)
            first = False
            if isinstance(item, Assignment):
                self.assignment(item, depth)
            elif isinstance(item, Extends):
                self.statement(f"extends {escape(item.path)}", item.span, depth)
            elif isinstance(item, Remove):
                self.statement(f"remove {'.'.join(item.path)}", item.span, depth)
            else:
                self.block(item, depth)

    def statement(self, text: str, span, depth: int) -> None:  # noqa: ANN001 - a Span
        self.lines.append(INDENT * depth + text + self.trailing(span.end_line, span.end_column))
        self.last_line = span.end_line

    def assignment(self, item: Assignment, depth: int) -> None:
        # Comments written inside a multi-line value move above it, in order.
        inner = [
            c for c in self.comments if c.line <= item.span.end_line and c.line >= item.span.line
        ]
        inner = [
            c
            for c in inner
            if not (c.line == item.span.end_line and c.column >= item.span.end_column)
        ]
        for comment in inner:
            self.comments.remove(comment)
            self.lines.append(INDENT * depth + comment.text.rstrip())
        head = f"{INDENT * depth}{'.'.join(item.path)} = "
        text = head + value_text(item.value)
        if len(text) > MAX_LINE and item.value.kind == "list" and item.value.value:
            self.lines.append(head + "[")
            for element in item.value.value:  # type: ignore[union-attr]
                self.lines.append(INDENT * (depth + 1) + value_text(element) + ",")
            text = INDENT * depth + "]"
        self.lines.append(text + self.trailing(item.span.end_line, item.span.end_column))
        self.last_line = item.span.end_line

    def block(self, block: Block, depth: int) -> None:
        header = INDENT * depth + block.kind + (f" {block.label}" if block.label else "")
        close_line = block.span.end_line
        header_line = block.kind_span.line
        has_inner_comments = any(header_line < c.line < close_line for c in self.comments)
        if not block.items and not has_inner_comments:
            comment = self.trailing(header_line, 0)
            if close_line != header_line:
                comment += self.trailing(close_line, 0)
            self.lines.append(header + " {}" + comment)
            self.last_line = close_line
            return
        # A comment on the header line belongs to the header unless an item shares the line.
        shares_line = block.items and block.items[0].span.line == header_line
        self.lines.append(header + " {" + ("" if shares_line else self.trailing(header_line, 0)))
        self.last_line = header_line
        self.items(block.items, depth + 1)
        self.leading(close_line, depth + 1, first=not block.items)
        self.lines.append(INDENT * depth + "}" + self.trailing(close_line, 0))
        self.last_line = close_line


def value_text(value: Value) -> str:
    if value.kind == "list":
        return "[" + ", ".join(value_text(v) for v in value.value) + "]"  # type: ignore[union-attr]
    if value.kind == "string":
        return escape(value.value)  # type: ignore[arg-type]
    if value.kind == "call":
        call: Call = value.value  # type: ignore[assignment]
        return f"{call.name}(" + ", ".join(value_text(v) for v in call.args) + ")"
    return value.text


def format_tree(tree: SyntaxTree) -> str:
    printer = _Printer(tree)
    printer.items(tree.items, 0)
    printer.leading(10**9, 0, first=not tree.items)
    return "\n".join(printer.lines).strip("\n") + "\n"
