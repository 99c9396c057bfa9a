"""Components: architectures, data, objectives and targets, which a spec combines.

`base` says what a component is, `registry` holds them all and the one table of what fits
with what, `targets` checks every objective's target the same way. Each family, data kind
and objective is one module under architectures/, data/ and objectives/.
"""

from expc.compiler.components.base import Architecture, DataSource, Objective, Section
from expc.compiler.components.registry import (
    Composition,
    all_objectives,
    compatibility,
    config_class,
    default,
    for_config,
    for_objective,
    misfit,
    required,
    section_names,
    smoke_profile,
    spec_schema,
    support_table,
)

__all__ = [
    "Architecture",
    "Composition",
    "DataSource",
    "Objective",
    "Section",
    "compatibility",
    "config_class",
    "default",
    "for_config",
    "for_objective",
    "misfit",
    "all_objectives",
    "required",
    "section_names",
    "smoke_profile",
    "spec_schema",
    "support_table",
]
