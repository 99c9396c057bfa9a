"""The compiler: spec text -> IR -> generated files. Never imports torch.

    parse (parse.py) -> lower (lower.py) -> validate (validate.py)
      -> plan (plan.py) -> render (render.py, templates/) -> format (pyformat.py)

pipeline.py runs the stages. Names are imported lazily so that a cached compile
(result_cache.py) does not pay for loading pydantic, Lark and Jinja.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from expc.compiler.diagnostics import CompileError, Diagnostic
    from expc.compiler.pipeline import (
        Compiled,
        compile_path,
        compile_source,
        parse_overrides,
        resolve,
    )

_EXPORTS = {
    "CompileError": "diagnostics",
    "Diagnostic": "diagnostics",
    "Compiled": "pipeline",
    "compile_path": "pipeline",
    "compile_source": "pipeline",
    "parse_overrides": "pipeline",
    "resolve": "pipeline",
}
__all__ = [
    "CompileError",
    "Compiled",
    "Diagnostic",
    "compile_path",
    "compile_source",
    "parse_overrides",
    "resolve",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'expc.compiler' has no attribute {name!r}")
    return getattr(importlib.import_module(f"expc.compiler.{_EXPORTS[name]}"), name)
