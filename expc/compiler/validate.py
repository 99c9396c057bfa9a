"""Stage 3: cross-field rules that types alone cannot express.

Each rule looks at one resolved run (or the whole spec) and points its diagnostic at the
field to change, showing the values involved (as HCL does), so a rule broken by a variant
points at the variant's line. The rules come from the spec's components: its family, its
data kind, its objective, and the target checks every objective shares
(expc/compiler/components/).
"""

from __future__ import annotations

from expc.compiler import components, ir
from expc.compiler.diagnostics import CompileError, Diagnostic


def validate(spec: ir.Spec) -> list[Diagnostic]:
    """Raise CompileError with every broken rule; return the warnings."""
    composition = components.for_config(spec.config)
    found: list[Diagnostic] = []
    for run in spec.runs:
        for rule in composition.run_rules:
            found.extend(rule(run.config))
    for spec_rule in composition.spec_rules:
        found.extend(spec_rule(spec))
    errors = [d for d in found if d.severity == "error"]
    if errors:
        raise CompileError(errors)
    return [d for d in found if d.severity != "error"]
