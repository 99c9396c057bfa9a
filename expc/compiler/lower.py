"""Stage 2: syntax tree -> typed IR (`ir.Spec`), with every error located in the spec.

Lowering builds a *raw* tree (blocks and values with spans), checks every name against
the IR's fields (unknown names get a did-you-mean), applies variants, sweep points,
profiles and `--set` overrides to copies of it, and validates each result with pydantic.
pydantic's error locations are mapped back to spans, so type and range errors point at
the offending value. Every error of every run is collected before anything is raised.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from expc.compiler import components, ir
from expc.compiler.components import registry
from expc.compiler.diagnostics import CompileError, Diagnostic, did_you_mean
from expc.compiler.parse import Assignment, Block, Call, Extends, Remove, SyntaxTree, Value
from expc.compiler.reference import DEFAULT_RUNS
from expc.compiler.source import Span

RUN_BLOCKS = ("variant", "sweep", "profile")
# Blocks for the runner (where runs execute, where results go), not part of any run's
# config: changing them never changes a run, so they are lowered beside the config.
RUNNER_BLOCKS = ("launch", "tracking")
MAX_RUNS = 4096


@dataclass
class RawBlock:
    """A block of the spec after dotted paths are expanded; mutable while overrides apply."""

    kind: str
    label: str | None
    label_span: Span | None
    span: Span
    fields: dict[str, RawBlock | Value] = field(default_factory=dict)
    key_spans: dict[str, Span] = field(default_factory=dict)


@dataclass(frozen=True)
class OverrideSyntax:
    """A `path = value` that changes the base config: from a variant, sweep, profile or CLI."""

    path: tuple[str, ...]
    path_span: Span
    value: Value


class Resolver(Protocol):
    """Resolves `run("spec", "name")` (pipeline.py): returns the run's default folder and
    its ir.Reference, or None after adding located diagnostics."""

    def __call__(
        self, call: Call, span: Span, holding: str, field: tuple[str | int, ...]
    ) -> tuple[str, ir.Reference] | list[Diagnostic]: ...


class _Lowering:
    def __init__(self, layers: list[SyntaxTree], resolver: Resolver | None = None):
        self.resolver = resolver
        self.references: list[ir.Reference] = []  # those met since the last validate()
        self.same_model: list[ir.Reference] = []  # of those, the ones loading weights
        # The spec's layers: the specs it extends (furthest first), then the spec itself.
        self.layers = layers
        self.tree = layers[-1]
        self.diagnostics: list[Diagnostic] = []
        self.misspelled: set[str] = set()  # help lines of unknown blocks, to avoid echoes
        self.objective = _objective_of(layers)
        self.sections = registry.sections(self.objective)
        self.config = registry.config_class(self.objective)

    def error(self, message: str, span: Span | None, help: str | None = None) -> None:
        self.diagnostics.append(Diagnostic(message, span, help=help))

    # --- building the raw tree ----------------------------------------------------------

    def base(self) -> RawBlock:
        """The base config of every run: each layer applied over the ones it extends."""
        root_span = Span(file=self.tree.source.name, line=1, column=1, end_line=1, end_column=2)
        root = RawBlock("spec", None, None, root_span)
        for index, layer in enumerate(self.layers):
            own, removes = self.layer(layer)
            # A top-level label that names rather than selects a kind (`experiment NAME`)
            # merges like a field; one that selects a kind (`model unet`) replaces.
            naming = {n for n, section in self.sections.items() if section.kinds is None}
            for remove in removes:
                if index == 0:
                    self.error(
                        f"nothing to remove: `{'.'.join(remove.path)}` is not inherited",
                        remove.path_span,
                        '`remove` drops what a spec this one `extends "..."` set',
                    )
                elif remove.path[0] not in RUN_BLOCKS:
                    self.remove(root, remove)
            _merge(root, own, naming)
        return root

    def remove(self, root: RawBlock, remove: Remove) -> None:
        raw = root
        *parents, leaf = remove.path
        for name in parents:
            child = raw.fields.get(name)
            if not isinstance(child, RawBlock):
                raw = None
                break
            raw = child
        if raw is None or leaf not in raw.fields:
            self.error(
                f"nothing to remove: no extended spec sets `{'.'.join(remove.path)}`",
                remove.path_span,
            )
            return
        del raw.fields[leaf]
        del raw.key_spans[leaf]

    def layer(self, tree: SyntaxTree) -> tuple[RawBlock, list[Remove]]:
        """One file's config items as a raw tree, and its `remove` statements (with paths
        from the top level), checked for duplicates within the file."""
        start = Span(file=tree.source.name, line=1, column=1, end_line=1, end_column=2)
        root = RawBlock("spec", None, None, start)
        removes: list[Remove] = []
        for item in tree.items:
            if isinstance(item, Extends):
                continue
            if isinstance(item, Remove):
                if item.path[0] in RUNNER_BLOCKS:
                    continue  # see runner_blocks
                removes.append(item)
                if item.path[0] in RUN_BLOCKS and len(item.path) > 2:
                    self.error(
                        f"`remove {'.'.join(item.path)}`: a {item.path[0]} is removed whole",
                        item.path_span,
                        f"write `remove {'.'.join(item.path[:2])}`, or redeclare the "
                        f"{item.path[0]} with what it should set",
                    )
                continue
            if isinstance(item, Block):
                if item.kind in RUN_BLOCKS or item.kind in RUNNER_BLOCKS:
                    continue
                if item.kind not in self.sections:
                    suggestion = did_you_mean(
                        item.kind, [*self.sections, *RUN_BLOCKS, *RUNNER_BLOCKS]
                    )
                    self.error(f"unknown block `{item.kind}`", item.kind_span, suggestion)
                    self.misspelled.add(suggestion or "")
                    continue
                if item.kind in root.fields:
                    self.error(
                        f"block `{item.kind}` is declared twice",
                        item.kind_span,
                        "merge the two blocks into one",
                    )
                    continue
                root.fields[item.kind] = self.block(item, removes, (item.kind,))
                root.key_spans[item.kind] = item.kind_span
            else:
                self.assign(root, item.path, item.path_span, item.value, duplicate_check=True)
        return root, removes

    def block(
        self, block: Block, removes: list[Remove] | None = None, loc: tuple[str, ...] = ()
    ) -> RawBlock:
        raw = RawBlock(block.kind, block.label, block.label_span, block.kind_span)
        for item in block.items:
            if isinstance(item, Remove):
                if removes is None:
                    self.error("`remove` belongs in the spec, not in this block", item.span)
                else:  # `model transformer { remove attention }` = `remove model.attention`
                    removes.append(Remove((*loc, *item.path), item.path_span, item.span))
                continue
            if isinstance(item, Block):
                # A label is checked where the block's field is known (`convert`): only a
                # field that holds one of several kinds takes one (`data arithmetic`).
                if item.kind in raw.fields:
                    self.error(f"block `{item.kind}` is declared twice", item.kind_span)
                    continue
                raw.fields[item.kind] = self.block(item, removes, (*loc, item.kind))
                raw.key_spans[item.kind] = item.kind_span
            else:
                self.assign(raw, item.path, item.path_span, item.value, duplicate_check=True)
        return raw

    def assign(
        self,
        raw: RawBlock,
        path: tuple[str, ...],
        path_span: Span,
        value: Value,
        duplicate_check: bool = False,
    ) -> None:
        *parents, leaf = path
        for name in parents:
            child = raw.fields.get(name)
            if child is None:
                child = RawBlock(name, None, None, path_span)
                raw.fields[name] = child
                raw.key_spans[name] = path_span
            if isinstance(child, Value):
                self.error(f"`{name}` is a value, not a block", path_span)
                return
            raw = child
        if isinstance(raw.fields.get(leaf), RawBlock):
            self.error(
                f"`{'.'.join(path)}` is a block; set one of its fields",
                path_span,
            )
            return
        if duplicate_check and leaf in raw.fields:
            self.error(
                f"`{'.'.join(path)}` is set twice",
                path_span,
                f"the first value is on line {raw.key_spans[leaf].line}",
            )
            return
        raw.fields[leaf] = value
        raw.key_spans[leaf] = path_span

    # --- raw tree -> python values for pydantic ------------------------------------------

    def to_config(self, root: RawBlock) -> tuple[dict[str, Any], dict[tuple, Span]]:
        spans: dict[tuple, Span] = {}
        data: dict[str, Any] = {"span": root.span, "field_spans": {}}
        for name, entry in root.fields.items():
            key_span = root.key_spans[name]
            if name in self.sections:
                if not isinstance(entry, RawBlock):
                    self.error(f"`{name}` is a block; set one of its fields", key_span)
                    continue
                model = self.section_model(name, entry)
                if model is None:
                    continue
                data[name] = self.convert(entry, model, (name,), spans)
                label_field = self.sections[name].label
                if label_field and entry.label is not None:
                    data[name][label_field] = entry.label
                    spans[(name, label_field)] = entry.label_span or entry.span
                    data[name]["field_spans"][label_field] = entry.label_span or entry.span
                data["field_spans"][name] = entry.span
                spans[(name,)] = entry.span
            elif name in ir.user_fields(self.config):
                if isinstance(entry, RawBlock):
                    self.error(f"`{name}` is a value, not a block", key_span)
                    continue
                data[name] = self.python(entry, self.config, name, (name,))
                data["field_spans"][name] = entry.span
                spans[(name,)] = entry.span
                _element_spans(entry, (name,), spans, data["field_spans"])
            else:
                self.error(
                    f"unknown field `{name}` at the top level",
                    key_span,
                    did_you_mean(name, [*self.sections, *ir.user_fields(self.config)]),
                )
        missing = [
            name
            for name in registry.required(self.objective)
            if name not in root.fields and f"did you mean `{name}`?" not in self.misspelled
        ]
        if missing:
            examples = [
                f"`{name} {next(iter(self.sections[name].kinds or {'NAME': None}))} {{ ... }}`"
                for name in missing
            ]
            self.error(
                f"missing block{'s' if len(missing) > 1 else ''} "
                + ", ".join(f"`{name}`" for name in missing),
                root.span,
                "add " + ", ".join(examples),
            )
        return data, spans

    def section_model(self, name: str, raw: RawBlock) -> type[BaseModel] | None:
        section = self.sections[name]
        if raw.label is None and section.required_label:
            choices = section.kinds
            example = next(iter(choices)) if choices else "NAME"
            self.error(
                f"block `{name}` needs a label",
                raw.span,
                f"write `{name} {example} {{ ... }}`",
            )
            return None
        if raw.label is not None and section.label is None:
            self.error(f"block `{name}` takes no label", raw.label_span)
            return None
        kinds = section.kinds
        if kinds is None:
            return self.config.model_fields[name].annotation  # type: ignore[return-value]
        model = kinds.get(raw.label)
        misfit = registry.misfit(self.objective, name, raw.label or "")
        if model is None and misfit is not None:
            self.error(
                misfit,
                raw.label_span,
                "these fit: " + ", ".join(f"`{name} {k}`" for k in kinds),
            )
        elif model is None:
            self.error(
                f"unknown {name} {section.label} `{raw.label}`",
                raw.label_span,
                did_you_mean(raw.label or "", kinds)
                or "expected one of " + ", ".join(f"`{k}`" for k in kinds),
            )
        return model

    def convert(
        self, raw: RawBlock, model: type[BaseModel], loc: tuple, spans: dict[tuple, Span]
    ) -> dict[str, Any]:
        known = ir.user_fields(model)
        section = self.sections.get(loc[0])
        label_field = section.label if section is not None and len(loc) == 1 else None
        data: dict[str, Any] = {"span": raw.span, "field_spans": {}}
        for name, entry in raw.fields.items():
            key_span = raw.key_spans[name]
            if name not in known or name == label_field:
                where = ".".join(loc)
                self.error(
                    f"unknown field `{name}` in `{where}`",
                    key_span,
                    did_you_mean(name, [k for k in known if k != label_field]),
                )
                continue
            annotation = model.model_fields[name].annotation
            block = ir.block_class(annotation)
            choices = ir.labelled_choices(annotation)
            if isinstance(entry, RawBlock) and entry.label is not None and not choices:
                self.error(f"block `{name}` takes no label", entry.label_span)
                continue
            if choices:
                if not isinstance(entry, RawBlock):
                    self.error(
                        f"`{'.'.join((*loc, name))}` is a block; set one of its fields", key_span
                    )
                    continue
                example = next(iter(choices))
                if entry.label is None:
                    self.error(
                        f"block `{name}` needs a label",
                        entry.span,
                        f"write `{name} {example} {{ ... }}`",
                    )
                    continue
                chosen = choices.get(entry.label)
                if chosen is None:
                    self.error(
                        f"unknown {name} kind `{entry.label}`",
                        entry.label_span,
                        did_you_mean(entry.label, choices)
                        or "expected one of " + ", ".join(f"`{k}`" for k in choices),
                    )
                    continue
                data[name] = self.convert(entry, chosen, (*loc, name), spans)
                data[name]["kind"] = entry.label
                data[name]["field_spans"]["kind"] = entry.label_span or entry.span
                data["field_spans"][name] = entry.span
                spans[(*loc, name)] = entry.span
                spans[(*loc, name, "kind")] = entry.label_span or entry.span
            elif block is not None:
                if not isinstance(entry, RawBlock):
                    self.error(
                        f"`{'.'.join((*loc, name))}` is a block; set one of its fields",
                        key_span,
                    )
                    continue
                data[name] = self.convert(entry, block, (*loc, name), spans)
                data["field_spans"][name] = entry.span
                spans[(*loc, name)] = entry.span
            else:
                if isinstance(entry, RawBlock):
                    self.error(f"`{'.'.join((*loc, name))}` is a value, not a block", key_span)
                    continue
                data[name] = self.python(entry, model, name, (*loc, name))
                data["field_spans"][name] = entry.span
                spans[(*loc, name)] = entry.span
                _element_spans(entry, (*loc, name), spans, data["field_spans"])
        return data

    def python(self, value: Value, model: type[BaseModel], name: str, loc: tuple[str, ...]) -> Any:
        """A leaf's python value; `run(...)` references resolved where the field takes
        run folders (the reference is kept in self.references)."""
        holding = ir.run_folder_kind(model, name)

        def convert(value: Value, at: tuple[str | int, ...]) -> Any:
            if value.kind == "list":
                return tuple(convert(v, (*at, i)) for i, v in enumerate(value.value))  # type: ignore[arg-type]
            if value.kind != "call":
                return value.value
            call: Call = value.value  # type: ignore[assignment]
            if holding is None:
                self.error(
                    f"`{'.'.join(loc)}` does not take a run folder, so not `{call.name}(...)`",
                    value.span,
                    '`run("spec", "name")` refers to another experiment\'s run '
                    "where a field takes run folders (`model.checkpoints`)",
                )
                return value.text
            if self.resolver is None:
                self.error("`run(...)` references need the spec's file", value.span)
                return value.text
            found = self.resolver(call, value.span, holding, at)
            if isinstance(found, list):
                self.diagnostics.extend(found)
                # The spec fails to compile on the diagnostic just recorded; the text as
                # written stands in for the folder so that the field's own checks (a
                # non-empty path) do not add a second, misleading error at the same place.
                return value.text
            folder, reference = found
            self.references.append(reference)
            if ir.needs_same_model(model, name):
                self.same_model.append(reference)
            return folder

        return convert(value, loc)

    def validate(self, root: RawBlock) -> ir.Config | None:
        self.references, self.same_model = [], []
        before = len(self.diagnostics)
        data, spans = self.to_config(root)
        structure_ok = len(self.diagnostics) == before
        try:
            config = self.config.model_validate(data)
        except ValidationError as error:
            for detail in error.errors():
                # Missing sections were reported above (or were misspelled); after a
                # structural error, absent values are not news either.
                missing = detail["type"] == "missing"
                if missing and (not structure_ok or detail["loc"][0] in self.sections):
                    continue
                self.diagnostics.append(_pydantic_diagnostic(detail, spans, root.span))
            return None
        for reference in self.same_model:
            self.check_same_model(reference, config)
        return config if structure_ok else None

    def check_same_model(self, reference: ir.Reference, config: ir.Config) -> None:
        """A run whose weights this one loads must have this run's model, field by field."""
        ours = config.model.model_dump()  # type: ignore[attr-defined]
        if reference.model == ours:
            return
        theirs = flatten(reference.model)
        mine = flatten(ours)
        differences = [
            f"`model.{key}` {theirs.get(key)!r} there, {mine.get(key)!r} here"
            for key in {**theirs, **mine}
            if theirs.get(key) != mine.get(key)
        ]
        self.error(
            f"run `{reference.run}` of {reference.spec} has another model: "
            + "; ".join(differences[:3])
            + (f" and {len(differences) - 3} more" if len(differences) > 3 else ""),
            reference.span,
            "its weights load only into the same model: match the `model` block, or refer "
            "to a run that has this one's",
        )

    # --- launch and tracking ------------------------------------------------------------

    def runner_blocks(self) -> tuple[ir.Node | None, ir.Tracking | None]:
        """The spec's `launch KIND { ... }` and `tracking { ... }`: each layer's over the ones
        it extends, as config blocks merge (another launcher kind replaces the block whole);
        `remove launch` drops an inherited one."""
        start = Span(file=self.tree.source.name, line=1, column=1, end_line=1, end_column=2)
        root = RawBlock("spec", None, None, start)
        for index, layer in enumerate(self.layers):
            own = RawBlock("spec", None, None, root.span)
            for item in layer.items:
                if isinstance(item, Remove) and item.path[0] in RUNNER_BLOCKS:
                    if index == 0 or len(item.path) > 1 or item.path[0] not in root.fields:
                        self.error(
                            f"nothing to remove: no extended spec declares `{item.path[0]}`"
                            if len(item.path) == 1
                            else f"`remove {'.'.join(item.path)}`: a {item.path[0]} block is "
                            "removed whole",
                            item.path_span,
                        )
                    else:
                        del root.fields[item.path[0]]
                if not isinstance(item, Block) or item.kind not in RUNNER_BLOCKS:
                    continue
                if item.kind in own.fields:
                    self.error(
                        f"block `{item.kind}` is declared twice",
                        item.kind_span,
                        "merge the two blocks into one",
                    )
                    continue
                own.fields[item.kind] = self.block(item, None, (item.kind,))
                own.key_spans[item.kind] = item.kind_span
            _merge(root, own)
        launch = tracking = None
        if "launch" in root.fields:
            launch = self.runner_block(root.fields["launch"])  # type: ignore[arg-type]
        if "tracking" in root.fields:
            raw = root.fields["tracking"]
            assert isinstance(raw, RawBlock)
            if raw.label is not None:
                self.error("block `tracking` takes no label", raw.label_span)
            else:
                tracking = self.validated(raw, ir.Tracking, "tracking")
        return launch, tracking  # type: ignore[return-value]

    def runner_block(self, raw: RawBlock) -> ir.Node | None:
        kinds = ir.LAUNCHERS
        if raw.label is None or raw.label not in kinds:
            self.error(
                "block `launch` needs a label"
                if raw.label is None
                else f"unknown launcher `{raw.label}`",
                raw.label_span or raw.span,
                did_you_mean(raw.label or "", kinds)
                or "write " + ", ".join(f"`launch {k} {{ ... }}`" for k in kinds),
            )
            return None
        return self.validated(raw, kinds[raw.label], "launch")

    def validated(self, raw: RawBlock, model: type[ir.Node], name: str) -> ir.Node | None:
        spans: dict[tuple, Span] = {(name,): raw.span}
        before = len(self.diagnostics)
        data = self.convert(raw, model, (name,), spans)
        try:
            validated = model.model_validate(data)
        except ValidationError as error:  # reported beside the unknown fields, if any
            for detail in error.errors():
                located = {**detail, "loc": (name, *detail["loc"])}
                self.diagnostics.append(_pydantic_diagnostic(located, spans, raw.span))
            return None
        return validated if len(self.diagnostics) == before else None

    # --- variants, sweeps, profiles ------------------------------------------------------

    def overrides(self, block: Block, prefix: tuple[str, ...] = ()) -> list[OverrideSyntax]:
        found: list[OverrideSyntax] = []
        for item in block.items:
            if isinstance(item, Assignment):
                found.append(OverrideSyntax((*prefix, *item.path), item.path_span, item.value))
            elif isinstance(item, Remove):
                self.error(
                    f"`remove` cannot be used inside a {block.kind}",
                    item.span,
                    f"a {block.kind} sets values; write the value it should have",
                )
            else:
                if item.label is not None:
                    self.error(f"block `{item.kind}` takes no label here", item.label_span)
                found.extend(self.overrides(item, (*prefix, item.kind)))
        return found

    def named_blocks(self, kind: str) -> list[Block]:
        """The variants (sweeps, profiles) of every layer: one a later layer declares with an
        inherited name replaces it in place; `remove variant.NAME` drops it."""
        found: dict[str, Block] = {}
        for index, layer in enumerate(self.layers):
            for remove in (i for i in layer.items if isinstance(i, Remove)):
                if index == 0 or remove.path[0] != kind or len(remove.path) > 2:
                    continue
                if len(remove.path) == 1:
                    found.clear()  # `remove variant`: none of the inherited variants
                elif remove.path[1] in found:
                    del found[remove.path[1]]
                else:
                    self.error(
                        f"nothing to remove: no extended spec declares {kind} `{remove.path[1]}`",
                        remove.path_span,
                        did_you_mean(remove.path[1], found),
                    )
            seen: set[str] = set()
            for block in layer.items:
                if not isinstance(block, Block) or block.kind != kind:
                    continue
                if block.label is None:
                    self.error(
                        f"`{kind}` needs a name", block.kind_span, f"write `{kind} NAME {{ ... }}`"
                    )
                elif block.label in seen:
                    self.error(f"{kind} `{block.label}` is declared twice", block.label_span)
                else:
                    seen.add(block.label)
                    found[block.label] = block
        return list(found.values())

    def apply(self, base: RawBlock, overrides: list[OverrideSyntax]) -> RawBlock:
        raw = _copy_tree(base)
        for override in overrides:
            self.assign(raw, override.path, override.path_span, override.value)
        return raw


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> {"a.b.c": leaf}: for messages that name what differs."""
    if isinstance(value, dict):
        found: dict[str, Any] = {}
        for key, item in value.items():
            found.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return found
    return {prefix: value}


def _merge(base: RawBlock, layer: RawBlock, naming: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    """Apply one layer's raw tree over the tree it extends, in place: a value replaces the
    inherited one; a block merges field by field, unless it names another kind
    (`model unet` over `model transformer`), which replaces the inherited block whole.
    Blocks in `naming` have a label that is a name, not a kind: it never replaces."""
    for name, entry in layer.fields.items():
        inherited = base.fields.get(name)
        same_kind = (
            isinstance(entry, RawBlock)
            and isinstance(inherited, RawBlock)
            and (
                name in naming
                or entry.label is None
                or inherited.label is None
                or entry.label == inherited.label
            )
        )
        if same_kind:
            assert isinstance(entry, RawBlock) and isinstance(inherited, RawBlock)
            if entry.label is not None:
                inherited.label, inherited.label_span = entry.label, entry.label_span
            _merge(inherited, entry)
        else:
            base.fields[name] = entry
            base.key_spans[name] = layer.key_spans[name]


def _copy_tree(raw: RawBlock) -> RawBlock:
    """A copy of the raw tree that overrides may change: its blocks and their dicts are new,
    its values (frozen) and spans (pydantic models never changed) are shared. Much cheaper
    than a deepcopy, which every run of a sweep would pay."""
    fields = {
        name: _copy_tree(entry) if isinstance(entry, RawBlock) else entry
        for name, entry in raw.fields.items()
    }
    return RawBlock(raw.kind, raw.label, raw.label_span, raw.span, fields, dict(raw.key_spans))


def _element_spans(
    value: Value, loc: tuple, spans: dict[tuple, Span], field_spans: dict[str, Span]
) -> None:
    """Each list element's own span, so an error in one element underlines it alone: for
    pydantic's errors (`spans`) and for later rules (`field_spans["metrics[2]"]`)."""
    if value.kind == "list":
        for index, element in enumerate(value.value):  # type: ignore[arg-type]
            spans[(*loc, index)] = element.span
            field_spans[f"{loc[-1]}[{index}]"] = element.span
            _element_spans(element, (*loc, index), spans, {})


def _python(value: Value) -> Any:
    """Syntax value -> the python value pydantic validates (lists become tuples)."""
    if value.kind == "list":
        return tuple(_python(v) for v in value.value)  # type: ignore[union-attr]
    if value.kind == "call":  # a reference, as written (resolved where a run is lowered)
        return value.text
    return value.value


_TYPE_NAMES = {
    "int_type": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "string_type": "a string",
    "bool_type": "`true` or `false`",
    "tuple_type": "a list",
    "model_type": "a block",
}
_BOUNDS = {
    "greater_than": ">",
    "greater_than_equal": ">=",
    "less_than": "<",
    "less_than_equal": "<=",
}


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, str):
        return f'the string "{value}"' if " " in value or not value else f"`{value}`"
    if isinstance(value, tuple):
        return "a list"
    if isinstance(value, dict):
        return "a block"
    return f"`{value}`"


def _union_tags(section: str) -> frozenset[str]:
    if section == "model":
        return frozenset(registry.all_architectures())
    return frozenset(registry.data_sources()) if section == "data" else frozenset()


def _pydantic_diagnostic(detail: dict, spans: dict[tuple, Span], fallback: Span) -> Diagnostic:
    # A union's member name (`TextData`) is part of pydantic's location, not of the spec's.
    full = tuple(p for p in detail["loc"] if isinstance(p, int) or not p[:1].isupper())
    # So is a tagged union's tag (`model.pretrained.format` is `model.format`): the family
    # or data kind that the block's label already names.
    if len(full) > 2 and isinstance(full[0], str) and full[1] in _union_tags(full[0]):
        full = (full[0], *full[2:])
    span = None
    for end in range(len(full), 0, -1):
        span = spans.get(full[:end])
        if span is not None:
            break
    loc = tuple(part for part in full if isinstance(part, str))
    where = ".".join(loc) or "spec"
    kind, value, ctx = detail["type"], detail.get("input"), detail.get("ctx") or {}
    if kind == "literal_error":
        choices = re.findall(r"'([^']*)'", ctx.get("expected", ""))
        return Diagnostic(
            f"invalid value {_describe(value)} for `{where}`",
            span or fallback,
            did_you_mean(str(value), choices)
            or "expected one of " + ", ".join(f"`{c}`" for c in choices),
        )
    if kind in _TYPE_NAMES:
        got = f'the string "{value}"' if isinstance(value, str) else _describe(value)
        return Diagnostic(f"`{where}` must be {_TYPE_NAMES[kind]}, got {got}", span or fallback)
    if kind in _BOUNDS:
        limit = next(iter(ctx.values()))
        return Diagnostic(
            f"`{where}` must be {_BOUNDS[kind]} {limit}, got {_describe(value)}", span or fallback
        )
    if kind == "string_pattern_mismatch":
        return Diagnostic(
            f"invalid name {_describe(value)} for `{where}`",
            span or fallback,
            "use lowercase letters, digits and `_`, starting with a letter",
        )
    if kind == "missing":
        return Diagnostic(f"missing `{where}`", span or fallback)
    message = detail["msg"].removeprefix("Value error, ")
    return Diagnostic(
        f"invalid value for `{where}`: {message[0].lower()}{message[1:]}", span or fallback
    )


def _at_seed(reference: ir.Reference, seed: int) -> ir.Reference:
    """A reference as one seed of a seeded run reads it: the upstream run at that seed,
    unless the reference already names a seeded run (`run("x", "gated-seed_3")`)."""
    if SEEDED_NAME.search(reference.run):
        return reference
    return reference.model_copy(update={"seed": seed})


SEEDED_NAME = re.compile(r"(^|-)seed_\d+$")


def _with_value(node: Any, path: tuple[str | int, ...], value: Any) -> Any:
    """`node` (a pydantic model, tuple or list) with the element at `path` replaced."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(head, int):
        items = list(node)
        items[head] = _with_value(items[head], rest, value)
        return type(node)(items)
    return node.model_copy(update={head: _with_value(getattr(node, head), rest, value)})


def _run_name(variant: str | None, point: dict[tuple[str, ...], Value]) -> str:
    parts = [variant] if variant else []
    for path, value in point.items():
        # Run names become directory names: a safe alphabet, bounded length.
        text = re.sub(r"[^A-Za-z0-9_.+-]", "_", str(value.value))
        if len(text) > 32:
            digest = hashlib.sha256(str(value.value).encode("utf-8", "surrogatepass")).hexdigest()
            text = f"{text[:23]}_{digest[:8]}"
        parts.append(f"{path[-1]}_{text}")
    return "-".join(parts) or "main"


def lower(
    tree: SyntaxTree | list[SyntaxTree],
    profile: str | None = None,
    extra: tuple[OverrideSyntax, ...] = (),
    sha256: str | None = None,
    resolver: Resolver | None = None,
) -> ir.Spec:
    """Lower a parsed spec to the IR; `profile` and `extra` (`--set`) apply to every run.

    `tree` is one spec, or the layers of one (include.load): the specs it extends, furthest
    first, then itself. `sha256` is the hash of every file read (the spec's own by default).
    """
    layers = tree if isinstance(tree, list) else [tree]
    tree = layers[-1]
    lowering = _Lowering(layers, resolver)
    base = lowering.base()
    base_config = lowering.validate(base)
    if base_config is None:
        raise CompileError(lowering.diagnostics)

    variants = [
        (block.label, lowering.overrides(block)) for block in lowering.named_blocks("variant")
    ]
    profiles = {
        block.label: lowering.overrides(block) for block in lowering.named_blocks("profile")
    }
    sweeps: list[tuple[str, list[tuple[tuple[str, ...], Span, list[Value]]]]] = []
    for block in lowering.named_blocks("sweep"):
        axes = []
        for override in lowering.overrides(block):
            if override.value.kind != "list" or not override.value.value:
                lowering.error(
                    f"sweep axis `{'.'.join(override.path)}` needs a non-empty list of values",
                    override.value.span,
                    "write `path = [value1, value2]`",
                )
                continue
            axes.append((override.path, override.path_span, list(override.value.value)))
        sweeps.append((block.label, axes))

    # Count runs before expanding anything: a few long sweep lists multiply fast.
    total_points = sum(math.prod(len(values) for _, _, values in axes) for _, axes in sweeps)
    total_runs = max(1, len(variants)) * max(1, total_points)
    if total_runs > MAX_RUNS:
        raise CompileError(
            lowering.diagnostics
            + [
                Diagnostic(
                    f"the spec expands to {total_runs} runs; the limit is {MAX_RUNS}",
                    base.span,
                    "shorten the sweep lists or split the spec",
                )
            ]
        )

    # Every sweep point of every sweep, as overrides.
    points: list[list[OverrideSyntax]] = []
    names: list[dict[tuple[str, ...], Value]] = []
    for _, axes in sweeps:
        for combo in itertools.product(*(values for _, _, values in axes)):
            chosen = list(zip(axes, combo, strict=True))
            points.append([OverrideSyntax(p, s, v) for (p, s, _), v in chosen])
            names.append({p: v for (p, _, _), v in chosen})
    if not points:
        points, names = [[]], [{}]

    selected_profile: list[OverrideSyntax] = []
    if profile is not None:
        if profile in profiles:
            selected_profile = profiles[profile]
        elif profile == "smoke":
            selected_profile = _default_smoke(tree, lowering.objective)
        else:
            raise CompileError(
                [
                    Diagnostic(
                        f"unknown profile `{profile}`",
                        None,
                        did_you_mean(profile, [*profiles, "smoke"])
                        or f"profiles in {tree.source.name}: "
                        + (", ".join(f"`{p}`" for p in dict.fromkeys([*profiles, "smoke"]))),
                    )
                ]
            )

    runs: list[ir.Run] = []
    seen_names: set[str] = set()
    for variant_name, variant_overrides in variants or [(None, [])]:
        for point, point_names in zip(points, names, strict=True):
            overrides = [*variant_overrides, *point, *selected_profile, *extra]
            config = lowering.validate(lowering.apply(base, overrides))
            upstream = tuple(lowering.references)
            name = _run_name(variant_name, point_names)
            if name in seen_names:
                lowering.error(f"two runs are both named `{name}`", base.span)
            seen_names.add(name)
            if config is None:
                continue
            own = tuple(_ir_override(o) for o in [*variant_overrides, *point])
            seeds = config.experiment.seed_list()  # type: ignore[attr-defined]
            if len(seeds) == 1 and config.experiment.seeds == 1:  # type: ignore[attr-defined]
                runs.append(ir.Run(name=name, overrides=own, config=config, upstream=upstream))
                continue
            # One run per seed, named by it; nothing else differs between them, except the
            # runs it reads: each seed reads the upstream runs of its own seed.
            for seed in seeds:
                experiment = config.experiment.model_copy(update={"seed": seed})  # type: ignore[attr-defined]
                seeded_config = config.model_copy(update={"experiment": experiment})
                seeded_upstream = tuple(_at_seed(r, seed) for r in upstream)
                for reference in seeded_upstream:
                    folder = f"{DEFAULT_RUNS}/{reference.experiment}/{reference.run_name}"
                    seeded_config = _with_value(seeded_config, reference.field, folder)
                runs.append(
                    ir.Run(
                        name=ir.seeded_run_name(name, seed),
                        overrides=(*own, ir.Override(path=("experiment", "seed"), value=seed)),
                        config=seeded_config,
                        upstream=seeded_upstream,
                    )
                )
    if len(runs) > MAX_RUNS:
        lowering.error(
            f"the spec expands to {len(runs)} runs with its seeds; the limit is {MAX_RUNS}",
            base.span,
            "fewer seeds, or shorten the sweep lists",
        )
    # Profiles the run did not select must still be valid.
    for profile_overrides in profiles.values():
        lowering.validate(lowering.apply(base, profile_overrides))
    launch, tracking = lowering.runner_blocks()

    if lowering.diagnostics:
        raise CompileError(lowering.diagnostics)
    return ir.Spec(
        source=tree.source.name,
        sha256=sha256 or tree.source.sha256,
        extends=tuple(layer.source.name for layer in layers[:-1]),
        config=base_config,
        variants=tuple(
            ir.Variant(name=n, overrides=tuple(_ir_override(o) for o in os)) for n, os in variants
        ),
        sweeps=tuple(
            ir.Sweep(
                name=n,
                axes=tuple(
                    ir.SweepAxis(path=p, values=tuple(_python(v) for v in vs)) for p, _, vs in axes
                ),
            )
            for n, axes in sweeps
        ),
        profiles=tuple(
            ir.Profile(name=n, overrides=tuple(_ir_override(o) for o in os))
            for n, os in profiles.items()
        ),
        runs=tuple(runs),
        launch=launch,
        tracking=tracking,
    )


def _objective_of(layers: list[SyntaxTree]) -> components.Objective:
    """The objective the spec's `objective KIND` selects (the last layer's that names one);
    the default one when none does (or names an unknown one), so that the rest of the spec
    is still checked and reported."""
    for tree in reversed(layers):
        for item in tree.items:
            if isinstance(item, Block) and item.kind == "objective" and item.label is not None:
                found = components.for_objective(item.label)
                if found is not None:
                    return found
    return components.default()


def _ir_override(override: OverrideSyntax) -> ir.Override:
    return ir.Override(path=override.path, value=_python(override.value), span=override.path_span)


def _default_smoke(tree: SyntaxTree, objective: components.Objective) -> list[OverrideSyntax]:
    span = Span(file=tree.source.name, line=1, column=1, end_line=1, end_column=2)
    return [
        OverrideSyntax(o.path, span, Value("number", o.value, str(o.value), span))
        for o in objective.smoke
    ]
