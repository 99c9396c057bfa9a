"""Stage 3: cross-field rules that types alone cannot express.

Each rule looks at one resolved run (or the whole spec) and points its diagnostic at the
field to change, showing the values involved (as HCL does), so a rule broken by a variant
points at the variant's line. The rules come from the spec's components: its family, its
data kind, its objective, and the target checks every objective shares
(expc/compiler/components/).
"""

from __future__ import annotations

import dataclasses

from expc.compiler import components, ir
from expc.compiler.diagnostics import CompileError, Diagnostic


def validate(spec: ir.Spec) -> list[Diagnostic]:
    """Raise CompileError with every broken rule; return the warnings."""
    composition = components.for_config(spec.config)
    found: list[Diagnostic] = []
    for run in spec.runs:
        for rule in composition.run_rules:
            found.extend(_located(d, run.config) for d in rule(run.config))
    for spec_rule in composition.spec_rules:
        found.extend(_located(d, spec.config) for d in spec_rule(spec))
    errors = [d for d in found if d.severity == "error"]
    if errors:
        raise CompileError(errors)
    return [d for d in found if d.severity != "error"]


def _located(diagnostic: Diagnostic, config: ir.Config) -> Diagnostic:
    """A rule about a section the spec left at its defaults has no line of its own to point
    at; it points at the first written block of the experiment (objective, model, data or
    the header), so that every error has a location."""
    if diagnostic.span is not None:
        return diagnostic
    for section in ("objective", "model", "data", "experiment"):
        span = getattr(getattr(config, section, None), "span", None)
        if span is not None:
            return dataclasses.replace(diagnostic, span=span)
    return diagnostic
