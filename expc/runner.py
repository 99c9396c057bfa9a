"""`expc run`: compile if needed, resolve runs with profile and overrides, execute the
generated code in-process with a progress bar, then write the experiment report."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType

from rich.console import Console

from expc.compiler import CompileError, Diagnostic, compile_source, parse_overrides, resolve
from expc.compiler.diagnostics import did_you_mean
from expc.compiler.plan import Plan
from expc.compiler.source import SourceFile
from expc.runtime.device import resolve_device
from expc.runtime.errors import RunError


def _load_package(package_dir: Path, experiment: str) -> ModuleType:
    """Import generated/<experiment>/train.py as a package module, from any folder."""
    name = f"_expc_generated_{experiment}"
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


def _select(run_names: list[str], wanted: list[str]) -> list[str]:
    if not wanted:
        return run_names
    chosen = []
    for name in wanted:
        matches = [r for r in run_names if r == name or r.startswith(name + "-")]
        if not matches:
            raise CompileError(
                [
                    Diagnostic(
                        f"no run or variant named `{name}`",
                        help=did_you_mean(name, run_names)
                        or "runs: " + ", ".join(f"`{r}`" for r in run_names),
                    )
                ]
            )
        chosen += [m for m in matches if m not in chosen]
    return chosen


def execute(
    spec_path: Path,
    variants: list[str],
    profile: str | None,
    sets: list[str],
    out_dir: Path,
    generated: Path,
    console: Console,
    device: str | None = None,
) -> Path:
    """Run the selected runs of a spec; return the path of the report."""
    from expc.runtime.progress import Progress, progress_bar
    from expc.runtime.report import write_report

    source = SourceFile.read(spec_path)
    sources = {source.name: source}
    try:
        compiled = compile_source(source)
        experiment = compiled.spec.config.experiment.name
        package_dir = generated / experiment
        stale = {
            name: text
            for name, text in compiled.files.items()
            if not (generated / name).exists()
            or (generated / name).read_text(encoding="utf-8") != text
        }
        for name, text in stale.items():
            (generated / name).parent.mkdir(parents=True, exist_ok=True)
            (generated / name).write_text(text, encoding="utf-8")
        if stale:
            console.print(f"compiled {source.name} -> {package_dir}/")

        overrides, set_sources = parse_overrides(sets)
        sources.update({s.name: s for s in set_sources})
        resolved, _ = resolve(source, profile=profile, overrides=overrides)
        plan = Plan(compiled.spec)
        origin = f"profile `{profile}`" if profile else "--set"
        for run in resolved.runs:
            plan.check_run(run.config, origin if (profile or sets) else "the spec")
        names = _select([r.name for r in resolved.runs], variants)
    except CompileError as error:
        error.sources = sources  # type: ignore[attr-defined]
        raise

    target = compiled.spec.config.target
    resolve_device(target.device, override=device)  # no GPU? say so before any work starts
    if target.kernels == "triton" and (device or target.device) == "cpu":
        # Triton reads this when it is first imported: run the kernels in its interpreter.
        os.environ["TRITON_INTERPRET"] = "1"
    module = _load_package(package_dir, experiment)
    experiment_dir = out_dir / experiment
    experiment_dir.mkdir(parents=True, exist_ok=True)
    (experiment_dir / "spec.json").write_text(
        json.dumps(
            {
                "source": source.name,
                "sha256": source.sha256,
                "runs": [r.name for r in resolved.runs],
            },
            indent=2,
        )
        + "\n"
    )
    runs = {r.name: r for r in resolved.runs}
    for name in names:  # run names are validated; this guards the invariant anyway
        if not (experiment_dir / name).resolve().is_relative_to(experiment_dir.resolve()):
            raise RunError(f"run name {name!r} would leave {experiment_dir}")
    with progress_bar() as bar:
        for name in names:
            values = plan.run_values(runs[name].config)
            config = module.Run(
                name,
                **values.get("run", {}),
                **{
                    section: getattr(module, cls)(**values.get(section, {}))
                    for section, cls in plan.sections()
                },
            )
            task = Progress(bar, name, config.train.steps)
            final = module.train(config, experiment_dir / name, task, device=device)
            bar.console.print(
                f"[bold]{name}[/]: "
                + ", ".join(f"{k}={v:.4g}" for k, v in final.items() if k not in ("tokens", "lr"))
            )
    return write_report(experiment_dir)
