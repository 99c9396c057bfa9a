"""The shape of the code, measured: lines per objective template and per generated
train.py, modules over 400 lines, and the import graph of `expc/` (modules, imports
between them, import cycles).

    python benchmarks/code_shape.py            # this checkout
    python benchmarks/code_shape.py --repo DIR # another one (e.g. a `git worktree` of an
                                               # older commit), to compare

Imports are read from the source with `ast` (nothing is imported); an import inside a
function counts like one at the top.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def _module_name(root: Path, path: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path) -> dict[str, set[str]]:
    """expc module -> the expc modules it imports."""
    files = {_module_name(root, p): p for p in (root / "expc").rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                # `from pkg import mod` depends on the module; `from pkg import name`
                # on the package (its __init__ hands the name on).
                names = [f"{base}.{alias.name}" for alias in node.names]
                targets = [t for t in names if t in files] or [base]
            for target in targets:
                if target in files and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parent.parent)
    root = parser.parse_args().repo.resolve()
    print("objective templates (lines):")
    for path in sorted((root / "expc" / "templates" / "objectives").glob("*.j2")):
        print(f"  {path.name:28} {_lines(path):5}")
    print("generated train.py (lines):")
    for path in sorted((root / "generated").glob("*/train.py")):
        print(f"  {path.parent.name:40} {_lines(path):5}")
    big = [(p, _lines(p)) for p in sorted((root / "expc").rglob("*.py")) if _lines(p) > 400]
    print(f"modules over 400 lines: {len(big)}")
    for path, count in big:
        print(f"  {path.relative_to(root)} {count}")
    graph = import_graph(root)
    edges = sum(len(targets) for targets in graph.values())
    print(f"modules: {len(graph)}, imports between them: {edges}")
    for component in cycles(graph):
        print("  cycle: " + " <-> ".join(component))


if __name__ == "__main__":
    main()
