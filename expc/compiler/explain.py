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


def _where(node: BaseModel, name: str | None, origins: bool) -> str:
    """`  # specs/x.exp:12` for a value (or block) a spec wrote: which file (a spec may
    extend others) and line it came from; nothing for a default."""
    if not origins:
        return ""
    spans = getattr(node, "field_spans", {})
    span = spans.get(name) if name is not None else getattr(node, "span", None)
    return f"  # {span.file}:{span.line}" if span is not None else ""


def _block(
    node: BaseModel,
    header: str,
    depth: int,
    skip: set[str],
    role: frozenset[str],
    origins: bool = False,
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
            lines += _block(value, f"{name} {value.kind}", depth + 1, {"kind"}, role, origins)
        elif isinstance(value, ir.Node):
            lines += _block(value, name, depth + 1, set(), role, origins)
        else:
            literal = _is_symbol(type(node), name)
            where = _where(node, name, origins)
            lines.append(f"{pad}  {name} = {_value(value, literal)}{where}")
    lines.append(f"{pad}}}")
    return lines


def config_text(config: ir.Config, origins: bool = False) -> str:
    """The config as .exp text; with `origins`, each value the spec set is followed by a
    comment naming the file and line it came from."""
    lines: list[str] = []
    composition = components.for_config(config)
    for section, info in composition.sections.items():
        node = getattr(config, section)
        label_field = info.label
        header = section + (f" {getattr(node, label_field)}" if label_field else "")
        skip = {label_field} if label_field else set()
        lines += _block(node, header, 0, skip, composition.used_as, origins)
        lines.append("")
    lines.append(f"metrics = {_value(config.metrics, True)}{_where(config, 'metrics', origins)}")
    return "\n".join(lines) + "\n"


def explain(spec: ir.Spec) -> str:
    """The base config, then each run as the overrides it applies."""
    out = [f"# {spec.source}, fully resolved (sha256 {spec.sha256[:12]})", ""]
    out.append(config_text(spec.config, origins=True))
    for run in spec.runs:
        out.append(f"# run `{run.name}`")
        if not run.overrides:
            out.append("#   (the base config)")
        for override in run.overrides:
            out.append(_override_line(spec, override))
    for profile in spec.profiles or (components.smoke_profile(spec),):
        out.append(f"# profile `{profile.name}`")
        for override in profile.overrides:
            out.append(_override_line(spec, override))
    return "\n".join(out) + "\n"


def _override_line(spec: ir.Spec, override: ir.Override) -> str:
    literal = override.path in _symbol_paths(spec.config)
    where = f"  ({override.span.file}:{override.span.line})" if override.span else ""
    return f"#   {'.'.join(override.path)} = {_value(override.value, literal)}{where}"
