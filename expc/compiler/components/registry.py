"""The registry of components, the one table of what combines, and the composition of one spec.

An objective's IR config class is assembled here from the declarations alone: its `data`
field takes every data kind that yields what the objective consumes, its `model` field every
family that provides the kind of network it needs. The spec's `objective KIND` picks the
objective; the blocks' labels pick the data kind and family; `Composition` then gathers
what those three components contribute (rules, templates, metrics, variable structure).
docs/components.md says how to add a component.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache, cached_property
from typing import Annotated, Any, Literal, Union

from pydantic import Field, SerializeAsAny, create_model

from expc.compiler import ir
from expc.compiler.components.base import (
    NETWORK_TEXT,
    YIELD_TEXT,
    Architecture,
    DataSource,
    Objective,
    Path,
    RunRule,
    Section,
    SpecRule,
)
from expc.compiler.components.targets import Target, target_rules
from expc.compiler.diagnostics import Diagnostic

# Modules that define the components, in the order errors and tables list them. The first
# objective is the default used to check a spec whose objective is missing or unknown.
ARCHITECTURES = ("transformer", "residual_mlp", "unet", "generators", "pretrained")
DATA = ("text", "arithmetic", "maze", "images", "prompts")
OBJECTIVES = ("next_token", "crl", "diffusion", "rlvr", "hivemind")
_PACKAGE = "expc.compiler.components"


@cache
def all_architectures() -> dict[str, Architecture]:
    """family -> architecture."""
    found = (_load(f"architectures.{name}", "ARCHITECTURE") for name in ARCHITECTURES)
    return {a.family: a for a in found}


@cache
def data_sources() -> dict[str, DataSource]:
    """data kind label -> data source (one source may serve several labels)."""
    found: dict[str, DataSource] = {}
    for name in DATA:
        source: DataSource = _load(f"data.{name}", "DATA")
        found.update(dict.fromkeys(source.kinds, source))
    return found


@cache
def all_objectives() -> dict[str, Objective]:
    """objective kind -> objective."""
    found = (_load(f"objectives.{name}", "OBJECTIVE") for name in OBJECTIVES)
    return {o.kind: o for o in found}


def ensemble_objectives() -> list[str]:
    """The objectives that train vectorized ensembles (`target.ensemble`)."""
    return [kind for kind, objective in all_objectives().items() if objective.target.ensemble]


def _load(module: str, name: str) -> Any:
    return getattr(importlib.import_module(f"{_PACKAGE}.{module}"), name)


# --- the one table of what combines ------------------------------------------------------


def families_for(objective: Objective) -> dict[str, Architecture]:
    """The families that provide the kind of network the objective needs."""
    return {f: a for f, a in all_architectures().items() if objective.needs in a.provides}


def data_for(objective: Objective) -> dict[str, DataSource]:
    """The data kinds that yield what the objective consumes."""
    return {k: d for k, d in data_sources().items() if objective.consumes in d.yields}


def misfit(objective: Objective, section: str, label: str) -> str | None:
    """Why a family or data kind that exists does not fit the objective (None if it fits
    or does not exist at all)."""
    if section == "model" and label in all_architectures() and label not in families_for(objective):
        return (
            f"model family `{label}` does not fit `objective {objective.kind}`: it needs "
            f"{NETWORK_TEXT[objective.needs]}"
        )
    if section == "data" and label in data_sources() and label not in data_for(objective):
        return (
            f"data `{label}` does not fit `objective {objective.kind}`: it consumes "
            f"{YIELD_TEXT[objective.consumes]}"
        )
    return None


def support_table() -> list[dict[str, str]]:
    """One row per objective: what it needs and takes, and the targets its code implements."""
    rows = []
    for kind, objective in all_objectives().items():
        support = objective.target
        rows.append(
            {
                "objective": kind,
                "network": NETWORK_TEXT[objective.needs],
                "families": ", ".join(families_for(objective)),
                "data": ", ".join(data_for(objective)),
                "precision": ", ".join(support.precision),
                "compile": "yes" if True in support.compile else "no",
                "kernels": ", ".join(support.kernels),
                "strategy": ", ".join(support.strategy),
                "varies": ", ".join(sorted(support.variable)) or "-",
                "ensemble": "yes" if support.ensemble else "no",
            }
        )
    return rows


def compatibility() -> list[tuple[str, str, str]]:
    """(objective, families that fit, data kinds that fit), for docs and `expc components`."""
    return [
        (kind, ", ".join(families_for(o)), ", ".join(data_for(o)))
        for kind, o in all_objectives().items()
    ]


# --- an objective's config class ---------------------------------------------------------


def _choice(nodes: list[type[ir.Node]], discriminator: str) -> Any:
    unique = list(dict.fromkeys(nodes))
    if len(unique) == 1:
        return unique[0]
    return Annotated[Union[tuple(unique)], Field(discriminator=discriminator)]  # noqa: UP007


def metric_names(objective: Objective) -> dict[str, str]:
    """Every metric a spec of this objective may ask for -> its meaning: the objective's
    own, then those of the families that fit (when its evaluation measures them)."""
    found = dict(objective.metrics)
    if objective.measures_architecture:
        for architecture in families_for(objective).values():
            found.update(architecture.metrics)
    return found


@cache
def config_class(objective: Objective) -> type[ir.Config]:
    """One run's IR config for `objective`, assembled from the components that fit it."""
    families = [a.node for a in families_for(objective).values()]
    data = [d.node for d in data_for(objective).values()]
    data_default: Any = objective.default_data if objective.default_data is not None else ...
    fields: dict[str, Any] = {
        "experiment": (ir.Experiment, ...),
        "data": (_choice(data, "kind"), data_default),
        "model": (_choice(families, "family"), ...),
        "objective": (objective.node, ...),
    }
    for name, node in objective.sections.items():
        fields[name] = (node, node())
    fields["target"] = (Target, Target())
    metric = Literal[tuple(metric_names(objective))]  # type: ignore[valid-type]
    fields["metrics"] = (
        tuple[metric, ...],
        Field(objective.default_metrics, json_schema_extra=ir.STRUCTURAL),
    )
    name = "".join(part.title() for part in objective.kind.split("_")) + "Config"
    config = create_model(name, __base__=ir.Config, __module__=__name__, **fields)
    config.__doc__ = f"One run of an `objective {objective.kind}` experiment."
    return config


# --- the spec's blocks -------------------------------------------------------------------


def sections(objective: Objective) -> dict[str, Section]:
    """The top-level blocks a spec of this objective takes, in spec order."""
    found = {
        "experiment": Section(label="name", required_label=True),
        "data": Section(
            label="kind",
            required_label=True,
            kinds={k: d.node for k, d in data_for(objective).items()},
        ),
        "model": Section(
            label="family",
            required_label=True,
            kinds={f: a.node for f, a in families_for(objective).items()},
        ),
        "objective": Section(
            label="kind",
            required_label=True,
            kinds={k: o.node for k, o in all_objectives().items()},
        ),
    }
    found.update((name, Section()) for name in objective.sections)
    found["target"] = Section(label="device")
    return found


def required(objective: Objective) -> tuple[str, ...]:
    data = () if objective.default_data is not None else ("data",)
    return ("experiment", *data, "model", "objective")


def section_names() -> list[str]:
    """Every top-level block name any objective accepts."""
    names: dict[str, None] = {}
    for objective in all_objectives().values():
        names.update(dict.fromkeys(sections(objective)))
    return list(names)


# --- one spec's components ---------------------------------------------------------------


@dataclass(frozen=True)
class Composition:
    """The objective, family and data kind of one spec, and what they contribute together."""

    objective: Objective
    architecture: Architecture
    data: DataSource

    @property
    def config(self) -> type[ir.Config]:
        return config_class(self.objective)

    @property
    def sections(self) -> dict[str, Section]:
        return sections(self.objective)

    @property
    def used_as(self) -> frozenset[str]:
        """The kinds the family and the data are used as here (see `ir.roles`)."""
        return frozenset({self.objective.needs, self.objective.consumes})

    @property
    def report(self) -> str | None:
        return self.objective.report

    @property
    def smoke(self) -> tuple[ir.Override, ...]:
        return self.objective.smoke

    @cached_property
    def run_rules(self) -> tuple[RunRule, ...]:
        return (
            self._fields_fit_the_role,
            *self.architecture.run_rules,
            *self.data.run_rules,
            *self.objective.run_rules,
        )

    def _fields_fit_the_role(self, config: ir.Config) -> Iterator[Diagnostic]:
        """A field the spec sets that means nothing in the component's role here (a
        transformer's `patch` in a language model) is an error, not silently dropped."""
        for section, label, used_as, texts in (
            ("model", config.model.family, self.objective.needs, NETWORK_TEXT),
            ("data", config.data.kind, self.objective.consumes, YIELD_TEXT),
        ):
            node = getattr(config, section)
            fields = type(node).model_fields
            for name in node.field_spans:
                if name in fields and not ir.applies(type(node), name, self.used_as):
                    kinds = fields[name].json_schema_extra["roles"]  # type: ignore[index]
                    yield Diagnostic(
                        f"`{section}.{name}` applies to `{section} {label}` only as "
                        + " or ".join(texts[k] for k in kinds)
                        + f"; `objective {self.objective.kind}` uses it as {texts[used_as]}",
                        node.span_of(name),
                        help=f"remove `{name}`",
                    )

    @cached_property
    def spec_rules(self) -> tuple[SpecRule, ...]:
        return (
            self._metrics_fit_the_family,
            *self.architecture.spec_rules,
            *self.objective.spec_rules,
            *target_rules(self.objective, ensemble_objectives),
        )

    def _metrics_fit_the_family(self, spec: ir.Spec) -> Iterator[Diagnostic]:
        """A family's metric (the transformer's probe) is asked of that family only."""
        config = spec.config
        for index, name in enumerate(config.metrics):
            if name in self.objective.metrics or name in self.architecture.metrics:
                continue
            owners = [
                f"`model {family}`"
                for family, a in families_for(self.objective).items()
                if name in a.metrics
            ]
            yield Diagnostic(
                f"metric `{name}` is measured by {' and '.join(owners)}, not by "
                f"`model {self.architecture.family}`",
                config.span_of(f"metrics[{index}]"),
                help=f"drop `{name}`, or use {' or '.join(owners)}",
            )

    @cached_property
    def variable_structure(self) -> frozenset[Path]:
        target = frozenset(("target", name) for name in self.objective.target.variable)
        return (
            self.architecture.variable_structure
            | self.data.variable_structure
            | self.objective.variable_structure
            | target
        )

    @cached_property
    def metrics(self) -> dict[str, str]:
        return metric_names(self.objective)

    def templates(self, spec: ir.Spec) -> dict[str, str]:
        """Generated file name -> template, for every run of the spec."""
        found = dict(self.architecture.provides[self.objective.needs])
        found.update(self.objective.templates)
        found.update(self.architecture.extra_templates(spec))
        return found


def default() -> Objective:
    return next(iter(all_objectives().values()))


def for_objective(kind: str | None) -> Objective | None:
    return all_objectives().get(kind) if kind is not None else None


def for_config(config: ir.Config) -> Composition:
    for objective in all_objectives().values():
        if type(config) is config_class(objective):
            return Composition(
                objective,
                all_architectures()[config.model.family],
                data_sources()[config.data.kind],
            )
    raise LookupError(f"no objective owns {type(config).__name__}")


def smoke_profile(spec: ir.Spec) -> ir.Profile:
    """The spec's `profile smoke`, or its objective's default one."""
    return spec.profile("smoke") or ir.Profile(
        name="smoke", overrides=for_config(spec.config).smoke
    )


def spec_schema() -> dict[str, Any]:
    """JSON Schema of a compiled spec, its config being any objective's."""
    configs = tuple(config_class(o) for o in all_objectives().values())
    config_type = SerializeAsAny[configs[0] if len(configs) == 1 else Union[configs]]  # noqa: UP007
    model = create_model("Spec", __base__=ir.Spec, config=(config_type, ...))
    return model.model_json_schema()
