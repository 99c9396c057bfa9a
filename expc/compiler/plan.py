"""Stage 4a: decide what generated code specialises and what it parameterises.

A structural IR field (one that changes the shape of the code) with one value across all
runs is written into the code; one that varies becomes a typed config field. Every other
leaf is a hyperparameter and always becomes a field of the section's frozen dataclass,
with the base spec's value as its default and the spec line it came from as a comment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel

from expc.compiler import components, ir
from expc.compiler.diagnostics import CompileError, Diagnostic

# Leaves that never become config fields: identity (in docstrings) and block labels.
# `experiment.seeds` makes runs (one per seed), each with its own `seed`.
_NOT_CONFIG = {("experiment", "name"), ("experiment", "description"), ("experiment", "seeds")}
# Fields read outside generated code: the loop (runtime.fit) and the runner read these of
# every run, whatever a template does with them.
RUNTIME_READS = frozenset(
    {"experiment.seed", "train.steps", "train.checkpoint_every", "target.threads"}
)
# Dataclass per spec section; `experiment.seed` lives on the Run itself.
SECTION_CLASSES = {
    "model": "ModelConfig",
    "data": "DataConfig",
    "objective": "ObjectiveConfig",
    "train": "TrainConfig",
    "eval": "EvalConfig",
    "target": "TargetConfig",
}


@dataclass(frozen=True)
class Leaf:
    path: tuple[str, ...]
    owner: type[BaseModel]
    structural: bool

    @property
    def run_folder(self) -> bool:
        """A field of run folders: a config field even when fixed (`expc run` sets it)."""
        return ir.run_folder_kind(self.owner, self.path[-1]) is not None

    @property
    def dotted(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True)
class ConfigField:
    """One field of a generated config dataclass."""

    path: tuple[str, ...]
    section: str  # "run" for fields on the Run dataclass itself
    name: str
    type: str  # Python annotation text
    default: Any
    origin: str  # "spec line 12" or "default"

    @property
    def dotted(self) -> str:
        return ".".join(self.path)


def leaves(
    node: BaseModel, prefix: tuple[str, ...] = (), role: frozenset[str] | None = None
) -> list[Leaf]:
    """Every value-holding path of an IR node, in declaration order. It walks the node's
    own classes, since a field such as `model` may hold any family that fits; fields that
    do not apply to the network's role (see `ir.roles`) are left out."""
    model = type(node)
    found: list[Leaf] = []
    for name in ir.user_fields(model):
        if not ir.applies(model, name, role):
            continue
        value = getattr(node, name)
        annotation = model.model_fields[name].annotation
        if value is None and (ir.labelled_choices(annotation) or ir.block_class(annotation)):
            continue  # an optional block the spec left out (a stage, its data): no fields
        if isinstance(value, ir.Node):
            found.extend(leaves(value, (*prefix, name), role))
        else:
            found.append(Leaf((*prefix, name), model, ir.is_structural(model, name)))
    return found


def get_path(node: BaseModel, path: tuple[str, ...]) -> Any:
    for name in path:
        node = getattr(node, name)
    return node


def _origin(spec: ir.Spec, path: tuple[str, ...]) -> str:
    node: Any = spec.config
    for name in path[:-1]:
        node = getattr(node, name)
    span = node.field_spans.get(path[-1])
    if span is None:
        return "default"
    # A value from a spec this one extends names its file.
    return f"spec line {span.line}" if span.file == spec.source else f"{span.file} line {span.line}"


def _python_type(leaf: Leaf, values: list[Any]) -> str:
    annotation = leaf.owner.model_fields[leaf.path[-1]].annotation
    if leaf.run_folder:
        return "tuple[str, ...]" if get_origin(annotation) is tuple else "str"
    if get_origin(annotation) is not None and leaf.structural:
        return "Literal[" + ", ".join(_literal(v) for v in values) + "]"
    if annotation in (int, float, str, bool):
        return annotation.__name__
    if get_origin(annotation) is Literal:  # a choice that may differ between runs
        return "Literal[" + ", ".join(_literal(v) for v in get_args(annotation)) + "]"
    args = [a.__name__ for a in get_args(annotation) if isinstance(a, type)]
    return args[0] if args else "object"


def _literal(value: Any) -> str:
    return repr(value).replace("'", '"') if isinstance(value, str) else repr(value)


class Plan:
    """What the templates need to know about one spec."""

    def __init__(self, spec: ir.Spec, omit: frozenset[tuple[str, ...]] = frozenset()):
        self.spec = spec
        self.configs = [run.config for run in spec.runs]
        self.composition = components.for_config(spec.config)
        self.leaves = leaves(spec.config, role=self.composition.used_as)
        self.omit = omit  # fields no generated code reads (`unread`): no config field

    @classmethod
    def of_files(cls, spec: ir.Spec, files: dict[str, str]) -> Plan:
        """The plan the spec's generated `files` were rendered with: the fields none of
        them reads left out (what `expc run` builds each run's config from)."""
        return cls(spec, omit=cls(spec).unread(files))

    def unread(self, files: dict[str, str]) -> frozenset[tuple[str, ...]]:
        """The config fields that no generated file reads (no `.name` in any of them), that
        no run changes, and that neither the loop, the runner nor the objective's report
        reads from config.json: generated code holds only what the spec uses. A section
        keeps at least one field, so its dataclass stays."""
        text = "\n".join(files.values())
        kept = RUNTIME_READS | set(self.composition.objective.report_reads)
        if self.uses("target.strategy", "ddp"):
            kept |= {"target.devices"}  # the ranks each run's launcher starts
        unread = [
            f
            for f in self.fields
            if f.dotted not in kept
            and not self.varies(f.dotted)
            and not any(leaf.path == f.path and leaf.run_folder for leaf in self.leaves)
            and not re.search(rf"\.{re.escape(f.name)}\b", text)
        ]
        sections = {f.section for f in self.fields}
        left = {s: [f for f in self.fields if f.section == s and f not in unread] for s in sections}
        return frozenset(f.path for f in unread if left[f.section])

    def values(self, dotted: str) -> list[Any]:
        """The sorted distinct values a path takes across runs."""
        path = tuple(dotted.split("."))
        return sorted({_hashable(get_path(c, path)) for c in self.configs}, key=repr)

    def varies(self, dotted: str) -> bool:
        return len(self.values(dotted)) > 1

    def fixed(self, dotted: str) -> Any:
        """The single value of a structural path; an error if runs disagree."""
        values = self.values(dotted)
        if len(values) != 1:
            raise ValueError(f"{dotted} varies between runs: {values}")
        return values[0]

    def gated_values(self, dotted: str) -> list[Any]:
        """The values a gate setting takes across the runs that have a gate."""
        path = tuple(dotted.split("."))
        gated = [c for c in self.configs if c.model.attention.gate != "none"]
        return sorted({_hashable(get_path(c, path)) for c in gated}, key=repr)

    def sections(self) -> list[tuple[str, str]]:
        """(section, dataclass name) for every section that has config fields."""
        return [(s, cls) for s, cls in SECTION_CLASSES.items() if self.section_fields(s)]

    def uses(self, dotted: str, value: Any) -> bool:
        """Whether any run sets the path to the value (so the code must support it)."""
        return value in self.values(dotted)

    def origin(self, dotted: str) -> str:
        return _origin(self.spec, tuple(dotted.split(".")))

    def cite(self, dotted: str) -> str:
        """` (spec line N)` for a value the spec wrote, nothing for a default."""
        origin = self.origin(dotted)
        return f" ({origin})" if origin != "default" else ""

    def sets(self, dotted: str) -> bool:
        """Whether any run gives the path a non-empty value (a run-folder field in use)."""
        return any(self.values(dotted))

    @property
    def reads_runs(self) -> bool:
        """Whether a run refers to another experiment's runs (`run(...)`)."""
        return any(run.upstream for run in self.spec.runs)

    def has_metric(self, name: str) -> bool:
        return name in self.spec.config.metrics

    @cached_property
    def fields(self) -> list[ConfigField]:
        found = []
        for leaf in self.leaves:
            # A run-folder field is a config field whenever a run sets it (`expc run` points
            # it at the folder it built); left at its default (empty) everywhere, it is not.
            unused = leaf.run_folder and not any(self.values(leaf.dotted))
            fixed = leaf.structural and not self.varies(leaf.dotted) and not leaf.run_folder
            if unused or leaf.path in self.omit:
                continue
            if leaf.path in _NOT_CONFIG or fixed:
                continue
            values = self.values(leaf.dotted)
            section = "run" if leaf.path[0] == "experiment" else leaf.path[0]
            found.append(
                ConfigField(
                    path=leaf.path,
                    section=section,
                    name="_".join(leaf.path[1:]),
                    type=_python_type(leaf, values),
                    default=get_path(self.spec.config, leaf.path),
                    origin=_origin(self.spec, leaf.path),
                )
            )
        return found

    def section_fields(self, section: str) -> list[ConfigField]:
        return [f for f in self.fields if f.section == section]

    def uses_literal(self, sections: list[str]) -> bool:
        """Whether the dataclasses of these sections need `typing.Literal`."""
        return any(f.type.startswith("Literal[") for f in self.fields if f.section in sections)

    def check_structure(self) -> None:
        """Refuse variation the templates cannot express (rather than emit wrong code)."""
        problems = []
        for leaf in self.leaves:
            fixed = leaf.path not in self.composition.variable_structure
            if leaf.structural and fixed and self.varies(leaf.dotted):
                problems.append(
                    Diagnostic(
                        f"`{leaf.dotted}` cannot differ between runs of one spec",
                        self._first_difference(leaf.path),
                        help="split the runs into separate specs",
                    )
                )
        if problems:
            raise CompileError(problems)

    def _first_difference(self, path: tuple[str, ...]) -> Any:
        """Where the first run that differs from the base spec sets `path` (a variant's or
        sweep's line), so the error points at the value to change."""
        base = _hashable(get_path(self.spec.config, path))
        for config in self.configs:
            if _hashable(get_path(config, path)) != base:
                return get_path(config, path[:-1]).span_of(path[-1])
        return self.spec.config.span

    def run_values(self, config: ir.Config) -> dict[str, dict[str, Any]]:
        """The dataclass field values of one run, by section."""
        values: dict[str, dict[str, Any]] = {}
        for field in self.fields:
            values.setdefault(field.section, {})[field.name] = _hashable(
                get_path(config, field.path)
            )
        return values

    def run_changes(self, config: ir.Config) -> dict[str, dict[str, Any]]:
        """Only the fields where a run differs from the base spec (for the RUNS table)."""
        changes: dict[str, dict[str, Any]] = {}
        for field in self.fields:
            value = _hashable(get_path(config, field.path))
            if value != _hashable(field.default):
                changes.setdefault(field.section, {})[field.name] = value
        return changes

    def run_table(self) -> tuple[list[tuple[ConfigField, str]], list[tuple[str, list[Any]]]]:
        """The runs as a table: the fields some run changes from the base spec, each with
        a variable name for the RUNS comprehension, and every run's value of each."""
        changed = {
            (s, n)
            for run in self.spec.runs
            for s, f in self.run_changes(run.config).items()
            for n in f
        }
        columns = [f for f in self.fields if (f.section, f.name) in changed]
        names = [f.name for f in columns]
        named = [
            (f, f.name if names.count(f.name) == 1 else f"{f.section}_{f.name}") for f in columns
        ]
        rows = [
            (run.name, [_hashable(get_path(run.config, f.path)) for f in columns])
            for run in self.spec.runs
        ]
        return named, rows

    def check_run(self, config: ir.Config, origin: str) -> None:
        """A run resolved with `--set`/profiles must not need code that was not generated."""
        problems = []
        for leaf in self.leaves:
            if leaf.path in self.omit:
                value = _hashable(get_path(config, leaf.path))
                if value != self.values(leaf.dotted)[0]:
                    problems.append(
                        Diagnostic(
                            f"{origin} sets `{leaf.dotted}` to {_literal(value)}, but no code "
                            "of this spec reads it",
                            None,
                            help="a setting for a feature the spec does not use (a metric "
                            "or a target it does not ask for): drop it, or use the feature",
                        )
                    )
                continue
            if not leaf.structural or leaf.path in _NOT_CONFIG:
                continue
            value = _hashable(get_path(config, leaf.path))
            allowed = self.values(leaf.dotted)
            if leaf.run_folder and any(_same_shape(value, a) for a in allowed if a):
                continue  # a config field whatever its folders: another seed's, say
            if value not in allowed:
                problems.append(
                    Diagnostic(
                        f"{origin} sets `{leaf.dotted}` to {_literal(value)}, but the generated "
                        f"code supports only {', '.join(_literal(v) for v in allowed)}",
                        None,
                        help="add a variant or sweep with this value to the spec and recompile",
                    )
                )
        if problems:
            raise CompileError(problems)


def _same_shape(value: Any, other: Any) -> bool:
    """Two run-folder values the same code reads: one folder each, or as many folders."""
    if isinstance(value, tuple) and isinstance(other, tuple):
        return len(value) == len(other)
    return isinstance(value, str) and isinstance(other, str)


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value
