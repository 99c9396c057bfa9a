"""Importing a generated package from any folder, and building its Run from JSON."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import sys
import typing
from pathlib import Path
from types import ModuleType
from typing import Any


def load_train_module(package_dir: Path) -> ModuleType:
    """Import <package_dir>/train.py as part of its package (it uses relative imports)."""
    package_dir = Path(package_dir).resolve()
    name = f"_expc_generated_{package_dir.name}"
    for module in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[module]  # a recompiled package must be re-imported
    spec = importlib.util.spec_from_file_location(
        name, package_dir / "__init__.py", submodule_search_locations=[str(package_dir)]
    )
    assert spec is not None and spec.loader is not None
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package
    spec.loader.exec_module(package)
    return importlib.import_module(f"{name}.train")


def run_from_dict(module: ModuleType, values: dict[str, Any]) -> Any:
    """`asdict(run)` back into the module's frozen Run (nested section dataclasses)."""
    hints = typing.get_type_hints(module.Run)
    fields = {}
    for field in dataclasses.fields(module.Run):
        value = values[field.name]
        kind = hints[field.name]
        if dataclasses.is_dataclass(kind):
            value = kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in value.items()})
        elif isinstance(value, list):  # a tuple field (the upstream runs) read from JSON
            value = tuple(value)
        fields[field.name] = value
    return module.Run(**fields)
