"""Shared helpers: compile spec text, run the CLI, import generated packages."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

os.environ.setdefault("COLUMNS", "200")  # rich wraps long lines at the terminal width
# No GPU here: Triton kernels run under Triton's interpreter on CPU tensors. It must be set
# before triton is first imported.
os.environ["TRITON_INTERPRET"] = "1"
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Parallel workers share 2 cores: one thread each (subprocesses inherit it), or torch
    # oversubscribes the CPU and every timing-sensitive test crawls.
    os.environ["OMP_NUM_THREADS"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from expc.cli import app  # noqa: E402
from expc.compiler import CompileError, compile_source  # noqa: E402
from expc.compiler.diagnostics import render_all  # noqa: E402
from expc.compiler.source import SourceFile  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").rglob("*.exp"))

# The smallest complete spec; tests append or replace lines to make their cases.
MINIMAL = """\
experiment tiny {}
data text { context = 16 }
model transformer {
  layers = 1
  width = 16
  heads = 2
}
objective next_token {}
train { steps = 2 batch_size = 2 eval_every = 1 eval_batches = 1 }
"""


if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _in_repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    # Spec names in headers and errors are relative to the working directory.
    monkeypatch.chdir(ROOT)


def compile_text(text: str, name: str = "test.exp"):
    return compile_source(SourceFile(name, text))


def error_text(text: str, name: str = "test.exp") -> str:
    """The rendered diagnostics a spec produces (fails the test if it compiles)."""
    source = SourceFile(name, text)
    with pytest.raises(CompileError) as caught:
        compile_source(source)
    return str(render_all(caught.value.diagnostics, {name: source}))


def experiment_dir(
    out: Path, experiment: str, profile: str | None = None, sets: list[str] | tuple = ()
) -> Path:
    """Where `expc run --out OUT` puts an experiment's runs under a profile and `--set`
    overrides: `OUT/<experiment>` for the default profile, else beside it
    (`OUT/<experiment>@smoke`, `OUT/<experiment>@smoke+set-1a2b3c4d`)."""
    from expc.runner import experiment_folder

    return out / experiment_folder(experiment, profile, list(sets))


def smoke_dir(out: Path, experiment: str) -> Path:
    """The experiment folder of `expc run SPEC --smoke --out OUT`: `OUT/<experiment>@smoke`."""
    return out / f"{experiment}@smoke"


def run_cli(*args: str, input: str | None = None):
    return CliRunner().invoke(app, [str(a) for a in args], input=input)


def write_package(files: dict[str, str], root: Path) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


_counter = 0


def import_generated(files: dict[str, str], root: Path):
    """Write a compiled package under root and import its model and train modules."""
    global _counter
    write_package(files, root)
    package = next(iter(files)).split("/")[0]
    _counter += 1
    name = f"_test_generated_{package}_{_counter}"
    spec = importlib.util.spec_from_file_location(
        name, root / package / "__init__.py", submodule_search_locations=[str(root / package)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    model = importlib.import_module(f"{name}.model")
    train = importlib.import_module(f"{name}.train")
    return model, train
