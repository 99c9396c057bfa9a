"""Backends: one per kind of experiment (language modelling, contrastive RL, diffusion, ...).

A backend owns everything that differs between kinds of experiment: the IR sections of its
specs (a `Config` subclass), its metrics, its cross-field rules, the structural fields its
templates can branch on, its Jinja templates, and the runtime function that adds its
analysis to the report. The spec's `objective` kind selects the backend; everything else
in the compiler (parsing, lowering, variants/sweeps/profiles, planning, formatting, caching)
is shared. docs/backends.md says how to add one.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Union

from expc.compiler import ir
from expc.compiler.diagnostics import Diagnostic

RunRule = Callable[[Any], Iterator[Diagnostic]]  # one resolved run's Config
SpecRule = Callable[[ir.Spec], Iterator[Diagnostic]]  # the whole spec


@dataclass(frozen=True)
class Section:
    """A top-level block of a spec: `name [label] { ... }`.

    label: the IR field the block's label sets (`data text` sets `data.kind`), or None when
    the block takes no label. kinds: label -> IR class for blocks whose label picks the
    class; None when the class is the Config field's own annotation.
    """

    label: str | None = None
    required_label: bool = False
    kinds: dict[str, type[ir.Node]] | None = None


@dataclass(frozen=True)
class Backend:
    name: str
    objective: str  # the `objective KIND` that selects this backend
    config: type[ir.Config]
    sections: dict[str, Section]
    required: tuple[str, ...]
    templates: tuple[str, ...]  # rendered into <experiment>/<file name without .j2>
    metrics: dict[str, str]  # metric name -> one-line meaning (for docs and errors)
    run_rules: tuple[RunRule, ...] = ()
    spec_rules: tuple[SpecRule, ...] = ()
    # Structural fields (see ir.STRUCTURAL) the templates can branch on per run.
    variable_structure: frozenset[tuple[str, ...]] = frozenset()
    # Templates added for some configs (e.g. the Triton kernels when kernels = triton).
    extra_templates: Callable[[Any], tuple[str, ...]] = field(default=lambda config: ())
    # "module:function" in expc.runtime: (experiment_dir) -> list of report.md lines.
    report: str | None = None
    # `--smoke` for a spec without its own `profile smoke`: a seconds-long run.
    smoke: tuple[ir.Override, ...] = ir.DEFAULT_SMOKE


def standard_sections(
    data: dict[str, type[ir.Node]],
    model: dict[str, type[ir.Node]],
    objective: dict[str, type[ir.Node]],
    *,
    train: bool = True,
    eval: bool = True,
) -> dict[str, Section]:
    """The top-level blocks most backends take, in spec order: `experiment NAME`, `data KIND`,
    `model FAMILY`, `objective KIND`, `train`, `eval`, `target [DEVICE]`."""
    found = {
        "experiment": Section(label="name", required_label=True),
        "data": Section(label="kind", required_label=True, kinds=data),
        "model": Section(label="family", required_label=True, kinds=model),
        "objective": Section(label="kind", required_label=True, kinds=objective),
        "train": Section(),
        "eval": Section(),
        "target": Section(label="device"),
    }
    for name, wanted in (("train", train), ("eval", eval)):
        if not wanted:
            del found[name]
    return found


# Modules under expc/compiler/backends/ that define a `BACKEND`. The first is the default
# used to report errors in a spec whose objective is missing or unknown.
MODULES = ("lm", "crl", "diffusion", "rlvr", "hivemind")


@cache
def registry() -> dict[str, Backend]:
    """objective kind -> backend."""
    found: dict[str, Backend] = {}
    for name in MODULES:
        backend: Backend = importlib.import_module(f"expc.compiler.backends.{name}").BACKEND
        found[backend.objective] = backend
    return found


def default() -> Backend:
    return next(iter(registry().values()))


def for_objective(kind: str | None) -> Backend | None:
    return registry().get(kind) if kind is not None else None


def for_config(config: ir.Config) -> Backend:
    for backend in registry().values():
        if type(config) is backend.config:
            return backend
    raise LookupError(f"no backend owns {type(config).__name__}")


def section_names() -> list[str]:
    """Every top-level block name any backend accepts, in registry order."""
    names: dict[str, None] = {}
    for backend in registry().values():
        names.update(dict.fromkeys(backend.sections))
    return list(names)


def spec_schema() -> dict[str, Any]:
    """JSON Schema of a compiled spec, its config being any backend's."""
    from pydantic import SerializeAsAny, create_model

    configs = tuple(backend.config for backend in registry().values())
    config_type = SerializeAsAny[configs[0] if len(configs) == 1 else Union[configs]]  # noqa: UP007
    model = create_model("Spec", __base__=ir.Spec, config=(config_type, ...))
    return model.model_json_schema()
