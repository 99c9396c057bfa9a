"""`expc run`: compile if needed, resolve runs with profile and overrides, execute the
generated code in-process with a progress bar, then write the experiment report."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from expc import launchers
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
from expc.compiler.paths import display_name
from expc.compiler.plan import Plan
from expc.compiler.source import SourceFile
from expc.runtime import integrity
from expc.runtime.device import resolve_device
from expc.runtime.errors import RunError
from expc.runtime.metrics import read_metrics
from expc.runtime.run_folder import claim
from expc.runtime.worker import (
    EnsembleJob,
    Job,
    RunJob,
    describe,
    execute_ensemble,
    log_failure,
    summary,
    torchrun_command,
    train_module,
)
from expc.verdict import verdict_of


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


@dataclass
class Session:
    """What one `expc run` command shares with the upstream runs it builds first."""

    out_dir: Path
    generated: Path | None  # None: generated/ for specs under specs/, else the run folder
    console: Console
    device: str | None = None
    resume: bool = False
    force: bool = False
    jobs: int = 1
    nodes: tuple[int, int, str, int] | None = None
    # The command line's launcher settings (`--launcher`, `--address`, ...): over the spec's
    # `launch` block, for this spec and the upstream ones it builds.
    launch_flags: dict[str, Any] = field(default_factory=dict)
    track: str | None = None  # a tracking URI (`--track`), beside the spec's `tracking` block
    # Trackers opened in this command (uri -> tracker), and the problems already shown.
    trackers: dict[str, Any] = field(default_factory=dict)
    tracking_problems: set[str] = field(default_factory=set)
    sync_every_s: float = 10.0
    seeds: str | None = None  # --seeds: "3" or "[0, 1, 2]", for the spec run (not upstream)
    # Upstream runs built (or found up to date) in this command: (spec path, profile, run)
    # -> the record config.json keeps, or the reason it is not available.
    built: dict[tuple[str, str | None, str], dict[str, str] | str] = field(default_factory=dict)
    # Runs that failed or were refused in this command: (spec path, profile, run) -> why.
    unavailable: dict[tuple[str, str | None, str], str] = field(default_factory=dict)
    # (upstream spec path, the dependent's profile) -> the profile the upstream runs under.
    profiles: dict[tuple[str, str | None], str | None] = field(default_factory=dict)


def execute(
    spec_path: Path,
    variants: list[str],
    profile: str | None,
    sets: list[str],
    out_dir: Path,
    generated: Path | None,
    console: Console,
    device: str | None = None,
    resume: bool = False,
    force: bool = False,
    jobs: int = 1,
    report: bool = True,
    nodes: tuple[int, int, str, int] | None = None,
    launch: dict[str, Any] | None = None,
    track: str | None = None,
    seeds: str | None = None,
) -> Path | None:
    """Run the selected runs of a spec, after the runs of other experiments they read;
    return the path of the report. `launch` holds the command line's launcher settings
    (`--launcher`, `--address`, ...), which override the spec's `launch` block."""
    session = Session(out_dir, generated, console, device, resume, force, jobs, nodes)
    session.launch_flags = dict(launch or {})
    session.track = track
    session.seeds = seeds
    try:
        return _execute(session, spec_path, variants, profile, sets, report=report)
    finally:
        launchers.shutdown()


def _execute(
    session: Session,
    spec_path: Path,
    variants: list[str],
    profile: str | None,
    sets: list[str],
    report: bool = True,
    upstream_of: str | None = None,
    upstream_seeds: tuple[int, ...] = (),
) -> Path | None:
    from expc.runtime.progress import Progress, progress_bar
    from expc.runtime.report import write_report

    console = session.console
    if not spec_path.is_file():
        raise RunError(f"no spec file at {spec_path}" + ("" if spec_path.suffix else " (.exp?)"))
    source = SourceFile.read(spec_path)
    sources = {source.name: source}
    try:
        compiled = compile_source(source)
        experiment = compiled.spec.config.experiment.name
        folder = experiment_folder(experiment, profile, sets)
        experiment_dir = session.out_dir / folder
        generated = session.generated or _default_generated(spec_path, experiment_dir)
        package_dir = generated / experiment

        overrides, set_sources = parse_overrides(sets)
        # --seeds: more runs of this experiment in its own folder (each run's folder names
        # its seed), so unlike --set it does not choose another folder. An upstream spec
        # trains the seeds its dependent runs read.
        if upstream_of is None:
            seeds = session.seeds
        else:
            seeds = f"[{', '.join(map(str, upstream_seeds))}]" if upstream_seeds else None
        if seeds is not None:
            seeded, seed_sources = parse_overrides([f"experiment.seeds={seeds}"], flag="--seeds")
            overrides, set_sources = (*overrides, *seeded), [*set_sources, *seed_sources]
        sources.update({s.name: s for s in set_sources})
        resolved = _resolve_blamed(source, compiled, profile, overrides)
        names = _select([r.name for r in resolved.runs], variants)
    except CompileError as error:
        error.sources = {**getattr(error, "sources", {}), **sources}  # type: ignore[attr-defined]
        raise
    # Written only once the profile, `--set` and `--variant` are known good: a mistyped
    # profile must not leave a folder behind.
    _write_package(compiled.files, generated, source.name, console)

    target = compiled.spec.config.target
    resolve_device(target.device, override=session.device)  # no GPU? say so before any work
    if target.kernels == "triton" and (session.device or target.device) == "cpu":
        # Triton reads this when it is first imported: run the kernels in its interpreter.
        os.environ["TRITON_INTERPRET"] = "1"
    runs = {r.name: r for r in resolved.runs}
    # A run whose input files are missing fails now, located in the spec; the others go on.
    blocked = _missing_inputs(resolved, names, sources, console)
    # The runs of other experiments the selected runs read, trained first if missing.
    wanted = [runs[n] for n in names if n not in blocked]
    blocked.update(_build_upstream(session, wanted, profile, experiment))

    module = train_module(package_dir)
    experiment_dir.mkdir(parents=True, exist_ok=True)
    _write_text(
        experiment_dir / "spec.json",
        json.dumps(
            {
                "source": source.name,
                "sha256": compiled.spec.sha256,
                "experiment": experiment,
                "profile": profile,
                "sets": list(sets),
                "package": str(package_dir.resolve()),
                "runs": [r.name for r in resolved.runs],
                # The backend's analysis (e.g. a depth table) that write_report adds.
                "report": components.for_config(compiled.spec.config).report,
            },
            indent=2,
        )
        + "\n",
    )
    plan = Plan(compiled.spec)
    for name in names:  # run names are validated; this guards the invariant anyway
        if not (experiment_dir / name).resolve().is_relative_to(experiment_dir.resolve()):
            raise RunError(f"run name {name!r} would leave {experiment_dir}")

    def config_of(name: str):  # noqa: ANN202 - the generated module's Run dataclass
        run = runs[name]
        values = plan.run_values(run.config)
        records = []
        for reference in run.upstream:  # point each reference at the folder built for it
            record = session.built[_upstream_key(session, reference, profile)]
            assert isinstance(record, dict)
            _set_element(values, reference.field, record["folder"])
            records.append(record)
        extra = {"upstream": tuple(records)} if plan.reads_runs else {}
        return module.Run(
            name,
            **values.get("run", {}),
            **{
                section: getattr(module, cls)(**values.get(section, {}))
                for section, cls in plan.sections()
            },
            **extra,
        )

    failed: dict[str, str] = dict(blocked)
    pending = []
    resumes: dict[str, bool] = {}
    for name in names:
        if name in failed:
            console.print(f"[bold red]{name}: not run[/]: {failed[name]}")
            continue
        verdict = verdict_of(
            experiment_dir / name,
            dataclasses.asdict(config_of(name)),
            session.force,
            # --force reruns the runs asked for; an upstream run only when it is stale.
            replace_current=upstream_of is None,
            resume=session.resume,
        )
        if verdict.skip:
            console.print(f"[bold]{name}[/]: {verdict.message}")
            if not verdict.ok:  # stale: never read by a dependent either
                failed[name] = verdict.message
            continue
        if verdict.message:
            console.print(f"[bold]{name}[/]: {verdict.message}")
        resumes[name] = session.resume if verdict.resume is None else verdict.resume
        pending.append(name)
    launch = launchers.settings_for(compiled.spec.launch, session.launch_flags)
    if launch.launcher != "local" and session.jobs > 1:
        raise RunError(
            f"--jobs runs local processes; with the {launch.launcher} launcher, each run is "
            "placed by it (set CPUs per run with --cpus)"
        )
    ddp = target.devices if target.strategy == "ddp" else 1
    # The units of placement: each ensemble `target.ensemble` forms is one (one process
    # trains its members together), every other run is one on its own.
    groups = _ensembles(compiled.spec, {name: config_of(name) for name in pending})
    tracker = _tracker(session, compiled.spec)
    with _live_tracking(session, tracker, experiment_dir, failed):
        if launch.launcher != "local" and pending:
            jobs: list[Job] = []
            for group in groups:
                members = tuple(
                    _job(n, config_of(n), package_dir, experiment_dir, session, resumes[n], ddp)
                    for n in group
                )
                jobs.append(EnsembleJob(members) if len(members) > 1 else members[0])
            for result in launchers.launch(jobs, launch, target, experiment_dir, console):
                if result.error:
                    failed[result.name] = result.error
                _sync(session, tracker, experiment_dir, failed)
            if launch.dry_run:
                return None
        elif launch.dry_run:
            console.print(f"# would train {len(pending)} runs here: " + ", ".join(pending))
            return None
        elif target.strategy == "ddp":
            for name in pending:
                config = config_of(name)
                launch_info = {
                    "run": dataclasses.asdict(config),
                    "out_dir": str(experiment_dir / name),
                    "device": session.device,
                    "resume": resumes[name],
                }
                run_dir = experiment_dir / name
                try:
                    with claim(run_dir):
                        ok = _torchrun(
                            package_dir, run_dir, launch_info, config, session.nodes, console
                        )
                except RunError as error:
                    console.print(f"[bold red]{name}: failed[/]: {error}")
                    failed[name] = str(error)
                    continue
                if not ok:
                    failed[name] = f"see {experiment_dir / name / 'job.log'}"
                elif (run_dir / "metrics.jsonl").is_file():
                    integrity.record(run_dir)
        elif session.jobs > 1 and len(groups) > 1:
            flags = _child_flags(profile, sets, session.device, session.resume, generated)
            if seeds is not None:
                flags += ["--seeds", seeds]
            for name, log in _run_jobs(
                spec_path, groups, flags, experiment_dir, session.out_dir, session.jobs, console
            ).items():
                failed[name] = f"see {log}"
        elif pending:
            if launch.cpus:  # threads per run, as a launcher gives a run the CPUs it reserved
                import torch

                torch.set_num_threads(launch.cpus)
            configs = {name: config_of(name) for name in pending}
            with progress_bar() as bar:
                for group in (g for g in groups if len(g) > 1):
                    for name, why in _train_ensemble(
                        group, configs, package_dir, experiment_dir, session, resumes, bar
                    ).items():
                        failed[name] = why
                    _sync(session, tracker, experiment_dir, failed)
                for name in (g[0] for g in groups if len(g) == 1):
                    config = configs[name]
                    task = Progress(
                        bar, name, getattr(config.train, "total_steps", config.train.steps)
                    )
                    try:
                        with claim(experiment_dir / name):  # one writer per run folder
                            final = module.train(
                                config,
                                experiment_dir / name,
                                task,
                                device=session.device,
                                resume=resumes[name],
                            )
                    except (RunError, OSError) as error:  # this run cannot go on; the others can
                        problem = describe(error, name)
                        failed[name] = problem
                        log_failure(experiment_dir / name, problem)
                        bar.console.print(f"[bold red]{name}: failed[/]: {problem}")
                        continue
                    integrity.record(experiment_dir / name)  # what "finished" is checked against
                    bar.console.print(f"[bold]{name}[/]: {summary(final)}")
                    _sync(session, tracker, experiment_dir, failed)
    finished = [n for n in names if n not in failed]
    for name, why in failed.items():  # what a dependent spec must not read
        session.unavailable[(str(spec_path), profile, name)] = why
    report_path = None
    if report and run_dirs_with_metrics(experiment_dir):
        report_path = write_report(experiment_dir)
    _sync(session, tracker, experiment_dir, failed)  # the report too; a no-op untracked
    if failed:
        where = f"{upstream_of}'s upstream " if upstream_of else ""
        listed = ", ".join(f"{name} ({why})" for name, why in failed.items())
        if finished:
            tail = "; the others finished" + (" and are in the report" if report_path else "")
        else:
            tail = "; none finished" + ("" if report_path else ", so no report was written")
        raise RunError(f"{len(failed)} of {len(names)} {where}runs failed: {listed}{tail}")
    return report_path


def _tracker(session: Session, spec: ir.Spec):  # noqa: ANN202
    """The tracker of `--track` (or the spec's `tracking` block), opened once per URI; None
    when nothing is tracked. A malformed URI stops the command before any run trains."""
    uri = session.track or (spec.tracking.uri if spec.tracking is not None else None)
    if uri is None:
        return None
    if spec.tracking is not None:
        session.sync_every_s = spec.tracking.sync_every_s
    if uri not in session.trackers:
        from expc.runtime.tracking import open_tracker

        session.trackers[uri] = open_tracker(uri)
    return session.trackers[uri]


def _sync(session: Session, tracker, experiment_dir: Path, failed: dict[str, str]) -> None:  # noqa: ANN001
    """Send what the tracker has not received yet; a tracking problem is shown once and
    never fails a run (the rows stay in the run folders and go with the next sync)."""
    if tracker is None or not experiment_dir.is_dir():
        return
    problem = tracker.sync(experiment_dir, failed)
    if problem and problem not in session.tracking_problems:
        session.tracking_problems.add(problem)
        session.console.print(f"[yellow]tracking[/]: {problem}")


@contextmanager
def _live_tracking(
    session: Session,
    tracker,
    experiment_dir: Path,
    failed: dict[str, str],  # noqa: ANN001
) -> Iterator[None]:
    """While the body trains runs, send what they logged so far every `sync_every_s`, so
    the tracking server shows runs as they go (a sync takes the experiment folder's lock,
    so it never races the one at a run's end)."""
    if tracker is None:
        yield
        return
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(session.sync_every_s):
            _sync(session, tracker, experiment_dir, dict(failed))

    thread = threading.Thread(target=loop, name="expc-tracking", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _ensembles(spec: ir.Spec, configs: dict[str, Any]) -> list[list[str]]:
    """The runs to train grouped into the ensembles `target.ensemble` asks for (each run on
    its own without it): runs that differ only in the objective's `ensemble_fields`."""
    from expc.runtime.ensemble import ensemble_groups

    chosen = spec.config.target.ensemble
    if chosen == "off" or len(configs) < 2:
        return [[name] for name in configs]
    fields = components.for_config(spec.config).objective.ensemble_fields
    plain = {name: dataclasses.asdict(config) for name, config in configs.items()}
    return ensemble_groups(plain, fields, cap=None if chosen == "auto" else int(chosen))


def _train_ensemble(
    group: list[str],
    configs: dict[str, Any],
    package_dir: Path,
    experiment_dir: Path,
    session: Session,
    resumes: dict[str, bool],
    bar: Any,
) -> dict[str, str]:
    """One ensemble of runs in this process; returns the runs that failed, with why. Each
    member's folder is claimed, recorded and summarised as a run trained on its own."""
    from expc.runtime.progress import Progress

    job = EnsembleJob(
        tuple(
            _job(name, configs[name], package_dir, experiment_dir, session, resumes[name], 1)
            for name in group
        )
    )
    sinks = {member.name: Progress(bar, member.name, member.steps) for member in job.members}
    bar.console.print(f"[bold]ensemble[/] of {len(group)} runs: {', '.join(group)}")
    results = execute_ensemble(job, sinks)
    failed = {result.name: result.error for result in results if result.error}
    if failed:
        bar.console.print(f"[bold red]{job.name}: failed[/]: {results[0].error}")
        return failed
    for result in results:
        bar.console.print(f"[bold]{result.name}[/]: {summary(result.final)}")
    return {}


def _job(
    name: str,
    config: object,
    package_dir: Path,
    experiment_dir: Path,
    session: Session,
    resume: bool,
    devices: int,
) -> RunJob:
    train = config.train  # type: ignore[attr-defined]
    return RunJob(
        name=name,
        package_dir=str(package_dir.resolve()),
        run=dataclasses.asdict(config),  # type: ignore[call-overload]
        run_dir=str((experiment_dir / name).resolve()),
        device=session.device,
        resume=resume,
        steps=getattr(train, "total_steps", train.steps),
        devices=devices,
    )


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


def _write_package(files: dict[str, str], generated: Path, shown: str, console: Console) -> None:
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
    plan = Plan(compiled.spec)
    if profile:
        with_profile, _ = resolve(source, profile=profile)
        for run in with_profile.runs:
            plan.check_run(run.config, f"profile `{profile}`")
    resolved, _ = resolve(source, profile=profile, overrides=overrides)
    for run in resolved.runs:
        plan.check_run(run.config, "--set" if overrides else "the spec")
    return resolved


def _missing_inputs(
    resolved: ir.Spec, names: list[str], sources: dict[str, SourceFile], console: Console
) -> dict[str, str]:
    """Runs (of `names`) that name a missing input file: each problem printed once, with
    its place in the spec; run name -> the reason."""
    from expc.compiler.diagnostics import render_all
    from expc.compiler.inputs import missing_inputs

    blocked: dict[str, str] = {}
    shown: set[str] = set()
    for run in resolved.runs:
        if run.name not in names:
            continue
        problems = missing_inputs(resolved.model_copy(update={"runs": (run,)}), Path.cwd())
        if not problems:
            continue
        blocked[run.name] = problems[0].message
        fresh = [d for d in problems if d.message not in shown]
        shown.update(d.message for d in fresh)
        if fresh:
            console.print(render_all(fresh, sources), end="")
    return blocked


def run_dirs_with_metrics(experiment_dir: Path) -> list[Path]:
    from expc.runtime.report import run_dirs

    return run_dirs(experiment_dir) if experiment_dir.is_dir() else []


# --- runs of other experiments --------------------------------------------------------------


def _upstream_profile(upstream: ir.Spec, profile: str | None) -> str | None:
    """The profile an upstream spec runs under: the dependent's, when the upstream has it
    (every spec has `smoke`); otherwise its default profile."""
    if profile is None:
        return None
    if profile == "smoke" or upstream.profile(profile) is not None:
        return profile
    return None


def _upstream_key(
    session: Session, reference: ir.Reference, profile: str | None
) -> tuple[str, str | None, str]:
    return (reference.path, session.profiles[(reference.path, profile)], reference.run_name)


def _build_upstream(
    session: Session, runs: list[ir.Run], profile: str | None, dependent: str
) -> dict[str, str]:
    """Train the runs of other experiments that `runs` read and that are missing (or stale,
    with --force), each spec once with the runs it needs; returns the dependent runs that
    cannot go on, with the reason."""
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
        upstream_profile = _upstream_profile(upstream_spec, profile)
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
            _execute(
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
            record = session.built[_upstream_key(session, reference, profile)]
            if isinstance(record, str):
                blocked.setdefault(run.name, record)
    return blocked


def _compile_upstream(path: Path) -> ir.Spec:
    spec, _ = resolve(SourceFile.read(path))
    return spec


def _file_sha256(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def _set_element(values: dict[str, dict[str, Any]], at: tuple[str | int, ...], folder: str) -> None:
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


def _torchrun(
    package_dir: Path,
    run_dir: Path,
    launch: dict,
    config: object,
    nodes: tuple[int, int, str, int] | None,
    console: Console,
) -> bool:
    """Launch one DDP run through torchrun; rank 0 writes the run folder."""
    run_dir.mkdir(parents=True, exist_ok=True)
    launch_file = run_dir / "launch.json"
    launch_file.write_text(json.dumps(launch, indent=2) + "\n")
    devices = config.target.devices  # type: ignore[attr-defined]
    command = torchrun_command(str(package_dir), launch_file, devices, nodes)
    name = run_dir.name
    threads = max(1, (os.cpu_count() or 1) // devices)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    with console.status(f"{name}: torchrun, {devices} process(es) per node"):
        with (run_dir / "job.log").open("w") as log:
            code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
    rows = read_metrics(run_dir)
    if code == 0:
        console.print(f"[bold]{name}[/]: {summary(rows[-1]) if rows else 'done'}")
        return True
    console.print(f"[bold red]{name}: failed[/] (log: {run_dir / 'job.log'})")
    return False


def _child_flags(
    profile: str | None, sets: list[str], device: str | None, resume: bool, generated: Path
) -> list[str]:
    flags = ["--generated", str(generated), "--force"]
    if profile:
        flags += ["--profile", profile]
    for item in sets:
        flags += ["--set", item]
    if device:
        flags += ["--device", device]
    if resume:
        flags.append("--resume")
    return flags


def _run_jobs(
    spec_path: Path,
    groups: list[list[str]],
    flags: list[str],
    experiment_dir: Path,
    out_dir: Path,
    jobs: int,
    console: Console,
) -> dict[str, Path]:
    """Each run (each ensemble: its members together) in its own `expc run` process, `jobs`
    at a time; a failure stops only itself. Returns the runs that failed, with their log."""
    threads = max(1, (os.cpu_count() or 1) // jobs)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}

    def launch(group: list[str]) -> tuple[int, float]:
        """The child's exit code, and when it started. An ensemble's output goes into its
        first member's job.log."""
        started = time.time()
        log_path = experiment_dir / group[0] / "job.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "expc", "run", str(spec_path)]
        command += [arg for name in group for arg in ("--variant", name)]
        command += ["--out", str(out_dir), "--no-report", *flags]
        with log_path.open("w") as log:
            code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
        return code, started

    def finished(name: str, since: float) -> bool:
        """Whether this child closed the run's files (integrity.json written and verified)."""
        record = experiment_dir / name / "integrity.json"
        return (
            record.is_file()
            and record.stat().st_mtime >= since
            and integrity.problem(experiment_dir / name) is None
        )

    failed: dict[str, Path] = {}
    units = "runs" if all(len(group) == 1 for group in groups) else "runs and ensembles"
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(launch, group): group for group in groups}
        console.print(f"running {len(groups)} {units}, {jobs} at a time ({threads} thread(s) each)")
        for future in as_completed(futures):
            group = futures[future]
            code, started = future.result()
            log = experiment_dir / group[0] / "job.log"
            for name in group:
                # A member that failed alone (diverged) fails alone: the others verify.
                if code == 0 or finished(name, started):
                    rows = read_metrics(experiment_dir / name)
                    console.print(f"[bold]{name}[/]: {summary(rows[-1]) if rows else 'done'}")
                else:
                    failed[name] = log
                    console.print(f"[bold red]{name}: failed[/] (log: {log})")
    return failed
