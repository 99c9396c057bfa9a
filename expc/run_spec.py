"""The spec `expc run` runs: compiled, its runs resolved under the profile, `--set` and
`--seeds` and selected by `--variant`, the experiment folder they go in, and the files
written before any run trains (the generated package, spec.json)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from expc.compiler import (
    CompileError,
    Diagnostic,
    compile_source,
    components,
    ir,
    parse_overrides,
    resolve,
)
from expc.compiler.diagnostics import did_you_mean
from expc.compiler.plan import Plan
from expc.compiler.source import SourceFile
from expc.runtime.errors import RunError


@dataclass
class LoadedSpec:
    """One spec as this command runs it: compiled, resolved under the profile, `--set` and
    `--seeds`, and where its code and runs go."""

    path: Path
    source: SourceFile
    sources: dict[str, SourceFile]
    compiled: Any
    resolved: ir.Spec
    names: list[str]  # the runs selected (`--variant`)
    profile: str | None
    sets: list[str]
    seeds: str | None
    experiment_dir: Path
    package_dir: Path

    @property
    def target(self) -> Any:
        return self.compiled.spec.config.target


def load(
    spec_path: Path,
    variants: list[str],
    profile: str | None,
    sets: list[str],
    seeds: str | None,
    out_dir: Path,
    generated: Path | None,
) -> LoadedSpec:
    """Compile the spec and resolve its runs under the profile, `--set` and `--seeds` (a
    count or list, as `experiment.seeds` takes it); `--variant` selects among them. A
    compile error carries the sources to show it in."""
    if not spec_path.is_file():
        raise RunError(f"no spec file at {spec_path}" + ("" if spec_path.suffix else " (.exp?)"))
    source = SourceFile.read(spec_path)
    sources = {source.name: source}
    try:
        compiled = compile_source(source)
        experiment = compiled.spec.config.experiment.name
        experiment_dir = out_dir / experiment_folder(experiment, profile, sets)
        generated = generated or _default_generated(spec_path, experiment_dir)
        overrides, set_sources = parse_overrides(sets)
        # --seeds: more runs of this experiment in its own folder (each run's folder names
        # its seed), so unlike --set it does not choose another folder.
        if seeds is not None:
            seeded, seed_sources = parse_overrides([f"experiment.seeds={seeds}"], flag="--seeds")
            overrides, set_sources = (*overrides, *seeded), [*set_sources, *seed_sources]
        sources.update({s.name: s for s in set_sources})
        resolved = _resolve_blamed(source, compiled, profile, overrides)
        names = _select([r.name for r in resolved.runs], variants)
    except CompileError as error:
        error.sources = {**getattr(error, "sources", {}), **sources}  # type: ignore[attr-defined]
        raise
    return LoadedSpec(
        spec_path, source, sources, compiled, resolved, names, profile, list(sets), seeds,
        experiment_dir, generated / experiment,
    )  # fmt: skip


def write_spec_json(spec: LoadedSpec) -> None:
    spec.experiment_dir.mkdir(parents=True, exist_ok=True)
    record = {
        "source": spec.source.name,
        "sha256": spec.compiled.spec.sha256,
        "experiment": spec.compiled.spec.config.experiment.name,
        "profile": spec.profile,
        "sets": spec.sets,
        "package": str(spec.package_dir.resolve()),
        "runs": [r.name for r in spec.resolved.runs],
        # The backend's analysis (e.g. a depth table) that write_report adds.
        "report": components.for_config(spec.compiled.spec.config).report,
    }
    _write_text(spec.experiment_dir / "spec.json", json.dumps(record, indent=2) + "\n")


def _select(run_names: list[str], wanted: list[str]) -> list[str]:
    if not wanted:
        return run_names
    chosen = []
    for name in wanted:
        # A run's exact name, else every sweep point of the variant with that name.
        matches = (
            [name] if name in run_names else [r for r in run_names if r.startswith(name + "-")]
        )
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


def experiment_folder(experiment: str, profile: str | None, sets: list[str]) -> str:
    """The folder of an experiment's runs under a profile and `--set` overrides: the default
    profile's is `<experiment>`, others are beside it (`<experiment>@smoke`,
    `<experiment>@set-1a2b3c4d`, `<experiment>@smoke+set-...`), so no profile or override
    ever writes over another's results."""
    labels = [profile] if profile else []
    if sets:
        # The same overrides in any order are the same folder (a path set twice: the last).
        chosen: dict[str, str] = {}
        for item in sets:
            path, _, value = item.partition("=")
            chosen[path.strip()] = value.strip()
        text = "\n".join(f"{path}={value}" for path, value in sorted(chosen.items()))
        labels.append(f"set-{hashlib.sha256(text.encode()).hexdigest()[:8]}")
    return experiment + ("@" + "+".join(labels) if labels else "")


def _default_generated(spec_path: Path, experiment_dir: Path) -> Path:
    """generated/ holds the committed code of specs/; a spec anywhere else compiles into its
    experiment folder (`<runs>/<experiment>/code/`), so the repository stays clean."""
    specs = (Path.cwd() / "specs").resolve()
    if spec_path.resolve().is_relative_to(specs):
        return Path("generated")
    return experiment_dir / "code"


def write_package(files: dict[str, str], generated: Path, shown: str, console: Console) -> None:
    stale = {
        name: text
        for name, text in files.items()
        if not (generated / name).exists() or (generated / name).read_text(encoding="utf-8") != text
    }
    for name, text in stale.items():
        (generated / name).parent.mkdir(parents=True, exist_ok=True)
        _write_text(generated / name, text)
    if stale:
        package = next(iter(files)).split("/", 1)[0]
        console.print(f"compiled {shown} -> {generated / package}/")


def _write_text(path: Path, text: str) -> None:
    """Write a whole file or leave the old one: a temp file renamed over it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _resolve_blamed(source: SourceFile, compiled, profile, overrides):  # noqa: ANN001, ANN202
    """The spec's runs under the profile and `--set`; a value the generated code cannot run
    is blamed on what set it: the profile alone is checked first, then with `--set`."""
    plan = Plan.of_files(compiled.spec, compiled.files)
    if profile:
        with_profile, _ = resolve(source, profile=profile)
        for run in with_profile.runs:
            plan.check_run(run.config, f"profile `{profile}`")
    resolved, _ = resolve(source, profile=profile, overrides=overrides)
    for run in resolved.runs:
        plan.check_run(run.config, "--set" if overrides else "the spec")
    return resolved


def missing_inputs(
    resolved: ir.Spec,
    names: list[str],
    sources: dict[str, SourceFile],
    console: Console,
    spec_path: Path | None = None,
) -> dict[str, str]:
    """Runs (of `names`) that name a missing input file, or one outside the project root of
    the spec at `spec_path`: each problem printed once, with its place in the spec; run
    name -> the reason."""
    from expc.compiler.diagnostics import render_all
    from expc.compiler.inputs import missing_inputs
    from expc.safe_read import policy_for

    policy = policy_for(spec_path) if spec_path is not None else None

    blocked: dict[str, str] = {}
    shown: set[str] = set()
    for run in resolved.runs:
        if run.name not in names:
            continue
        one = resolved.model_copy(update={"runs": (run,)})
        problems = missing_inputs(one, Path.cwd(), policy)
        if not problems:
            continue
        blocked[run.name] = problems[0].message
        fresh = [d for d in problems if d.message not in shown]
        shown.update(d.message for d in fresh)
        if fresh:
            console.print(render_all(fresh, sources), end="")
    return blocked
