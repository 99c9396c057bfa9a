"""`expc explain`: the fully resolved IR written back as .exp text, every default filled in."""

from __future__ import annotations

from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel

from expc.compiler import components, ir
from expc.compiler.parse import escape
from expc.compiler.plan import leaves


def _value(value: Any, literal_field: bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if literal_field else escape(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_value(v, literal_field) for v in value) + "]"
    return repr(value)


def _is_symbol(model: type[BaseModel], name: str) -> bool:
    """Whether a field's values are bare names: a Literal, or a tuple of Literals."""
    annotation = model.model_fields[name].annotation
    args = get_args(annotation) if get_origin(annotation) is tuple else (annotation,)
    return any(get_origin(arg) is Literal for arg in args)


def _symbol_paths(config: ir.Config) -> set[tuple[str, ...]]:
    """Paths whose values are written as bare names (the Literal-typed ones)."""
    found = leaves(config, role=components.for_config(config).used_as)
    return {leaf.path for leaf in found if _is_symbol(leaf.owner, leaf.path[-1])}


def _block(
    node: BaseModel, header: str, depth: int, skip: set[str], role: frozenset[str]
) -> list[str]:
    pad = "  " * depth
    lines = [f"{pad}{header} {{"]
    for name in ir.user_fields(type(node)):
        if name in skip or not ir.applies(type(node), name, role):
            continue
        value = getattr(node, name)
        annotation = type(node).model_fields[name].annotation
        labelled = ir.labelled_choices(annotation)
        if value is None and (labelled or ir.block_class(annotation)):
            continue  # an optional block the spec left out (a stage, its data)
        if isinstance(value, ir.Node) and labelled:
            lines += _block(value, f"{name} {value.kind}", depth + 1, {"kind"}, role)
        elif isinstance(value, ir.Node):
            lines += _block(value, name, depth + 1, set(), role)
        else:
            literal = _is_symbol(type(node), name)
            lines.append(f"{pad}  {name} = {_value(value, literal)}")
    lines.append(f"{pad}}}")
    return lines


def config_text(config: ir.Config) -> str:
    lines: list[str] = []
    composition = components.for_config(config)
    for section, info in composition.sections.items():
        node = getattr(config, section)
        label_field = info.label
        header = section + (f" {getattr(node, label_field)}" if label_field else "")
        skip = {label_field} if label_field else set()
        lines += _block(node, header, 0, skip, composition.used_as)
        lines.append("")
    lines.append(f"metrics = {_value(config.metrics, True)}")
    return "\n".join(lines) + "\n"


def explain(spec: ir.Spec) -> str:
    """The base config, then each run as the overrides it applies."""
    out = [f"# {spec.source}, fully resolved (sha256 {spec.sha256[:12]})", ""]
    out.append(config_text(spec.config))
    for run in spec.runs:
        out.append(f"# run `{run.name}`")
        if not run.overrides:
            out.append("#   (the base config)")
        for override in run.overrides:
            literal = override.path in _symbol_paths(spec.config)
            out.append(f"#   {'.'.join(override.path)} = {_value(override.value, literal)}")
    for profile in spec.profiles or (components.smoke_profile(spec),):
        out.append(f"# profile `{profile.name}`")
        for override in profile.overrides:
            literal = override.path in _symbol_paths(spec.config)
            out.append(f"#   {'.'.join(override.path)} = {_value(override.value, literal)}")
    return "\n".join(out) + "\n"
