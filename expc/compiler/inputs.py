"""Local input files a spec names (a text corpus, an image folder, prompt and answer files,
GGUF files), and the packages of the pretrained models it names, checked before any run
starts, each error pointing at the value in the spec.

The fields are marked with `ir.input_file` metadata. Whether a value exists depends on the
directory `expc run` starts in, not on the spec, so this is no compile rule: `expc run`
calls `missing_inputs` after compiling and before training, where otherwise the first
run's loader would fail deep inside the run (and only that run's input would be named).
The check is what the runtime loaders accept (expc/runtime/data.py, diffusion/data.py,
hivemind/prompts.py, hivemind/responses.py): a built-in value names no file, an empty
value nothing; any other value is a path relative to `cwd` (an absolute one as it is).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from expc.compiler import components, ir, plan
from expc.compiler.diagnostics import Diagnostic
from expc.compiler.source import Span
from expc.model_registry import REGISTRY, missing_distribution
from expc.safe_read import Policy


def missing_inputs(spec: ir.Spec, cwd: Path, policy: Policy | None = None) -> list[Diagnostic]:
    """One diagnostic per input-file value (field path, value) that a run of `spec` reads
    and that is missing, or is not what the loader takes, relative to `cwd`, or (with a
    `policy`) lies outside the spec's project root; in run order, the first run naming a
    value locating it."""
    found: list[Diagnostic] = []
    seen: set[tuple[tuple[str, ...], str]] = set()
    for run in spec.runs:
        config = run.config
        for leaf in plan.leaves(config, role=components.for_config(config).used_as):
            name = leaf.path[-1]
            if ir.names_pretrained_models(leaf.owner, name):
                found += _uninstalled_models(plan.get_path(config, leaf.path[:-1]), leaf, seen)
                continue
            builtins = ir.input_file_builtins(leaf.owner, name)
            if builtins is None:
                continue
            owner = plan.get_path(config, leaf.path[:-1])
            for value, span in _values(owner, name):
                if not value or value in builtins or (leaf.path, value) in seen:
                    continue
                seen.add((leaf.path, value))
                if policy is not None and not policy.permits(Path(cwd) / value):
                    message, help = policy.refusal(f'"{value}" ({leaf.dotted})', Path(cwd) / value)
                    found.append(Diagnostic(message, span, help=help))
                    continue
                problem = _problem(Path(cwd) / value, *ir.input_file_rules(leaf.owner, name))
                if problem is not None:
                    found.append(_diagnostic(problem, value, leaf, builtins, span, cwd))
    return found


def _uninstalled_models(
    owner: ir.Node, leaf: plan.Leaf, seen: set[tuple[tuple[str, ...], str]]
) -> list[Diagnostic]:
    """Registry models whose weights' package is not installed (unknown names are compile
    errors already)."""
    found = []
    for value, span in _values(owner, leaf.path[-1]):
        if not value or value not in REGISTRY or (leaf.path, value) in seen:
            continue
        seen.add((leaf.path, value))
        missing = missing_distribution(value)
        if missing is not None:
            found.append(
                Diagnostic(
                    f"pretrained model `{value}` is not installed: its weights ship in "
                    f"{missing} ({leaf.dotted})",
                    span,
                    help=f"{REGISTRY[value].install}; `expc models` lists what is installed",
                )
            )
    return found


def _values(owner: ir.Node, name: str) -> Iterator[tuple[str, Span | None]]:
    """The field's value(s) with their spans: each element of a tuple its own."""
    value: Any = getattr(owner, name)
    if isinstance(value, str):
        yield value, owner.span_of(name)
    elif isinstance(value, tuple):
        for index, element in enumerate(value):
            if isinstance(element, str):
                yield element, owner.field_spans.get(f"{name}[{index}]", owner.span_of(name))


def _problem(path: Path, folder: bool, suffixes: tuple[str, ...]) -> str | None:
    """What is wrong with `path` for a loader taking files (with one of `suffixes`, if
    any) and, with `folder`, folders; None: nothing."""
    if folder and path.is_dir():
        return None
    what = "file or folder" if folder else "file"
    if not path.exists():
        return f"no such {what}"
    if path.is_dir():
        return "a folder, not a file"
    if not path.is_file():
        return f"not a {what}"
    if suffixes and path.suffix not in suffixes:
        return "not a " + " or ".join(suffixes) + (" file" if not folder else " file or a folder")
    return None


def _diagnostic(
    problem: str,
    value: str,
    leaf: plan.Leaf,
    builtins: tuple[str, ...],
    span: Span | None,
    cwd: Path,
) -> Diagnostic:
    where = "" if Path(value).is_absolute() else f" ({Path(cwd).resolve()})"
    help = f"relative paths are resolved from the folder `expc run` starts in{where}"
    if builtins:
        shipped = " or ".join(f'"{b}"' for b in builtins)
        help += f"; or use the built-in {shipped}"
    return Diagnostic(f"{problem}: {value} ({leaf.dotted})", span, help=help)
