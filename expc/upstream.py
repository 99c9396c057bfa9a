"""The runs of other experiments that a spec's runs read (`run("spec", "name")` in a
field): trained first by `expc run` where they are missing (or stale, with --force), each
upstream spec once with the runs it needs, and recorded in the dependent run's config."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expc.compiler import ir, resolve
from expc.compiler.paths import display_name
from expc.compiler.source import SourceFile
from expc.runtime.errors import RunError

if TYPE_CHECKING:
    from expc.session import Session


def profile_for(upstream: ir.Spec, profile: str | None) -> str | None:
    """The profile an upstream spec runs under: the dependent's, when the upstream has it
    (every spec has `smoke`); otherwise its default profile."""
    if profile is None:
        return None
    if profile == "smoke" or upstream.profile(profile) is not None:
        return profile
    return None


def upstream_key(
    session: Session, reference: ir.Reference, profile: str | None
) -> tuple[str, str | None, str]:
    return (reference.path, session.profiles[(reference.path, profile)], reference.run_name)


def build_upstream(
    session: Session,
    runs: list[ir.Run],
    profile: str | None,
    dependent: str,
    execute: Callable[..., Path | None],
) -> dict[str, str]:
    """Train the runs of other experiments that `runs` read and that are missing (or stale,
    with --force), each spec once with the runs it needs; returns the dependent runs that
    cannot go on, with the reason. `execute` runs an upstream spec as the runner runs any
    spec (passed in: the runner calls this module, not the other way round)."""
    from expc.run_spec import experiment_folder

    # Per upstream spec and seeded or not: the run names, and the seeds they are read at.
    wanted: dict[tuple[str, bool], tuple[list[str], set[int]]] = {}
    for run in runs:
        for reference in run.upstream:
            names, seeds = wanted.setdefault(
                (reference.path, reference.seed is not None), ([], set())
            )
            if reference.run_name not in names:
                names.append(reference.run_name)
            if reference.seed is not None:
                seeds.add(reference.seed)
    for (path, _), (names, seeds) in wanted.items():
        upstream_spec = _compile_upstream(Path(path))
        upstream_profile = profile_for(upstream_spec, profile)
        session.profiles[(path, profile)] = upstream_profile
        todo = [n for n in names if (path, upstream_profile, n) not in session.built]
        if not todo:
            continue
        experiment = upstream_spec.config.experiment.name
        folder = session.out_dir / experiment_folder(experiment, upstream_profile, [])
        label = f" (profile `{upstream_profile}`)" if upstream_profile else ""
        session.console.print(
            f"[bold]{dependent}[/] reads {', '.join(f'{experiment}/{n}' for n in todo)}{label}"
        )
        problem = None
        try:
            execute(
                session,
                Path(path),
                todo,
                upstream_profile,
                [],
                upstream_of=dependent,
                upstream_seeds=tuple(sorted(seeds)),
            )
        except RunError as error:
            problem = str(error)
        for name in todo:
            run_dir = folder / name
            checkpoint = run_dir / "checkpoint.pt"
            reason = session.unavailable.get((path, upstream_profile, name))
            if reason or not (run_dir / "summary.json").exists() or not checkpoint.exists():
                why = f"upstream run {experiment}/{name} did not finish"
                detail = reason or problem
                session.built[(path, upstream_profile, name)] = why + (
                    f" ({detail})" if detail else ""
                )
                continue
            session.built[(path, upstream_profile, name)] = {
                "spec": display_name(Path(path)),
                "spec_sha256": upstream_spec.sha256,
                "run": name,
                "folder": str(run_dir),
                "checkpoint_sha256": _file_sha256(checkpoint),
            }
    blocked: dict[str, str] = {}
    for run in runs:
        for reference in run.upstream:
            record = session.built[upstream_key(session, reference, profile)]
            if isinstance(record, str):
                blocked.setdefault(run.name, record)
    return blocked


def _compile_upstream(path: Path) -> ir.Spec:
    spec, _ = resolve(SourceFile.read(path))
    return spec


def _file_sha256(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def set_element(values: dict[str, dict[str, Any]], at: tuple[str | int, ...], folder: str) -> None:
    """Put a built upstream folder where its reference was written: `at` is the field's
    path, with the list index last for a list (`("model", "checkpoints", 0)`)."""
    names = [part for part in at if isinstance(part, str)]
    section, key = names[0], "_".join(names[1:])  # as plan.ConfigField names the field
    fields = values.setdefault(section, {})
    if isinstance(at[-1], int):
        items = list(fields[key])
        items[at[-1]] = folder
        fields[key] = tuple(items)
    else:
        fields[key] = folder
