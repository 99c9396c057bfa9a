"""Stage 4b: IR + plan -> Python source text through the Jinja templates.

Rendering is a pure function returning {relative path: text}; it never reads the spec
text (only the IR) and never writes files. Spec strings reach the code only through the
`py` filter (a Python literal) or the `pystr` filter (escaped docstring text), and
identifiers come from the IR's strict name patterns.
"""

from __future__ import annotations

import contextlib
import re
from functools import cache
from typing import Any

import jinja2

from expc import __version__
from expc.compiler import components, ir
from expc.compiler.cache import cache_dir
from expc.compiler.plan import SECTION_CLASSES, Plan


def _py(value: Any) -> str:
    """A Python literal for a spec value: the only way spec values enter generated code."""
    if isinstance(value, bool | int | float | str) or value is None:
        return repr(value)
    if isinstance(value, tuple | list):
        items = [_py(v) for v in value]
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    raise TypeError(f"cannot render {type(value).__name__} as a literal")


def _pystr(text: str) -> str:
    """Spec text inside a docstring or comment: one line, no quote or backslash can escape."""
    text = re.sub(r"\s+", " ", text).replace("\\", "\\\\").replace('"', '\\"')
    # Control characters, surrogates and the like become escape sequences, never raw bytes.
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


class _BytecodeCache(jinja2.FileSystemBytecodeCache):
    """Jinja's bytecode files in the compile cache; a failed write (a full disk) only means
    the template is compiled again next time."""

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        with contextlib.suppress(OSError):
            super().dump_bytecode(bucket)


@cache
def _environment() -> jinja2.Environment:
    directory = cache_dir()
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("expc", "templates"),
        # Jinja checks each template's source checksum before using cached bytecode.
        bytecode_cache=_BytecodeCache(str(directory)) if directory else None,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["py"] = _py
    env.filters["pystr"] = _pystr
    env.filters["lines"] = _lines
    return env


def _lines(text: str) -> str:
    """A macro's non-empty lines, each ending in a newline. Written as
    `{% filter lines %}{{ macro() }}{% endfilter %}` on a line of its own, a call adds
    exactly the lines the macro made, and nothing at all when it made none."""
    return "".join(line + "\n" for line in text.splitlines() if line.strip())


def config_key(path: tuple[str, ...]) -> str:
    """Spec path -> the dotted key of the generated dataclasses (`model.attention_gate`)."""
    if path[0] == "experiment":
        return "_".join(path[1:])
    return f"{path[0]}." + "_".join(path[1:])


def render(spec: ir.Spec) -> dict[str, str]:
    """Render every file of the experiment's package, unformatted: once with every config
    field, then, when some field is read by no file, again without it."""
    plan = Plan(spec)
    plan.check_structure()
    files = _render(spec, plan)
    unread = plan.unread(files)
    return _render(spec, Plan(spec, omit=unread)) if unread else files


def _render(spec: ir.Spec, plan: Plan) -> dict[str, str]:
    config = spec.config
    composition = plan.composition
    smoke = components.smoke_profile(spec)
    profiles = [*spec.profiles] + ([smoke] if smoke not in spec.profiles else [])
    context = {
        "spec": _Safe(spec),
        "plan": plan,
        "version": __version__,
        "section_classes": SECTION_CLASSES,
        "config_key": config_key,
        "profiles": profiles,
    }
    env = _environment()
    package = config.experiment.name
    files = {f"{package}/__init__.py": env.get_template("package_init.py.j2").render(context)}
    for name, template in composition.templates(spec).items():
        files[f"{package}/{name}"] = env.get_template(template).render(context)
    return files


class _Safe:
    """The spec as templates see it, with the source name made comment-safe."""

    def __init__(self, spec: ir.Spec):
        self._spec = spec
        self.source = re.sub(r"[^\w./-]", "_", spec.source)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._spec, name)
