"""`expc run`: compile if needed, resolve runs with profile and overrides, decide which to
train (skip, resume, replace: expc.verdict), hand them to a launcher (expc.launchers: this
process, `--jobs` processes, torchrun, Ray or SLURM) and report what came back: the
failures, tracking, then the experiment report."""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console

from expc import launchers
from expc.compiler import components, ir
from expc.compiler.plan import Plan
from expc.run_spec import LoadedSpec, load, missing_inputs, write_package, write_spec_json
from expc.run_spec import experiment_folder as experiment_folder  # imported from here too
from expc.runtime.device import resolve_device
from expc.runtime.errors import RunError
from expc.runtime.seeding import resolve_threads
from expc.runtime.worker import EnsembleJob, Job, RunJob, runs_of, train_module
from expc.session import Session
from expc.upstream import build_upstream, set_element, upstream_key
from expc.verdict import verdict_of


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
    if upstream_of is None:
        seeds = session.seeds
    else:  # an upstream spec trains the seeds its dependent runs read
        seeds = f"[{', '.join(map(str, upstream_seeds))}]" if upstream_seeds else None
    spec = load(spec_path, variants, profile, sets, seeds, session.out_dir, session.generated)
    # Written only once the profile, `--set` and `--variant` are known good: a mistyped
    # profile must not leave a folder behind.
    write_package(spec.compiled.files, spec.package_dir.parent, spec.source.name, session.console)
    target = spec.target
    resolve_device(target.device, override=session.device)  # no GPU? say so before any work
    if target.kernels == "triton" and (session.device or target.device) == "cpu":
        # Triton reads this when it is first imported: run the kernels in its interpreter.
        os.environ["TRITON_INTERPRET"] = "1"
    runs = {r.name: r for r in spec.resolved.runs}
    # A run whose input files are missing fails now, located in the spec; the others go on.
    failed = missing_inputs(spec.resolved, spec.names, spec.sources, session.console, spec.path)
    # The runs of other experiments the selected runs read, trained first if missing.
    wanted = [runs[n] for n in spec.names if n not in failed]
    failed.update(
        build_upstream(
            session, wanted, profile, spec.compiled.spec.config.experiment.name, _execute
        )
    )
    module = train_module(spec.package_dir)
    write_spec_json(spec)
    for name in spec.names:  # run names are validated; this guards the invariant anyway
        if not (spec.experiment_dir / name).resolve().is_relative_to(spec.experiment_dir.resolve()):
            raise RunError(f"run name {name!r} would leave {spec.experiment_dir}")
    plan = Plan.of_files(spec.compiled.spec, spec.compiled.files)
    configs = {
        name: _config(session, module, plan, runs[name], profile)
        for name in spec.names
        if name not in failed
    }
    resumes = _verdicts(session, spec, configs, failed, replace_current=upstream_of is None)
    if _place(session, spec, {name: configs[name] for name in resumes}, resumes, failed):
        return None  # a dry run
    return _finish(session, spec, failed, report, upstream_of)


def _config(session: Session, module: Any, plan: Plan, run: ir.Run, profile: str | None) -> Any:
    """The generated module's Run for a resolved run: each upstream reference pointed at the
    folder built for it, and its thread count resolved (`threads = 0`: the default), so
    the config it is compared, trained and recorded with is the one it runs with."""
    values = plan.run_values(run.config)
    records = []
    for reference in run.upstream:  # point each reference at the folder built for it
        record = session.built[upstream_key(session, reference, profile)]
        assert isinstance(record, dict)
        set_element(values, reference.field, record["folder"])
        records.append(record)
    extra = {"upstream": tuple(records)} if plan.reads_runs else {}
    config = module.Run(
        run.name,
        **values.get("run", {}),
        **{
            section: getattr(module, cls)(**values.get(section, {}))
            for section, cls in plan.sections()
        },
        **extra,
    )
    return resolve_threads(config)


def _verdicts(
    session: Session,
    spec: LoadedSpec,
    configs: dict[str, Any],
    failed: dict[str, str],
    replace_current: bool,
) -> dict[str, bool]:
    """The runs to train, each with whether it resumes; the others are said why (and a
    stale one is failed: a dependent must not read it either)."""
    console = session.console
    resumes: dict[str, bool] = {}
    for name in spec.names:
        if name in failed:
            console.print(f"[bold red]{name}: not run[/]: {failed[name]}")
            continue
        verdict = verdict_of(
            spec.experiment_dir / name,
            dataclasses.asdict(configs[name]),
            session.force,
            # --force reruns the runs asked for; an upstream run only when it is stale.
            replace_current=replace_current,
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
    return resumes


def _place(
    session: Session,
    spec: LoadedSpec,
    configs: dict[str, Any],
    resumes: dict[str, bool],
    failed: dict[str, str],
) -> bool:
    """Hand the runs to train to the launcher the settings choose, recording each run's
    failure as it comes back (and sending what it logged to the tracker after each job);
    True for a dry run."""
    settings = launchers.settings_for(spec.compiled.spec.launch, session.launch_flags)
    jobs = _jobs(session, spec, configs, resumes)
    launcher = launchers.choose(settings, spec.target, session.jobs, len(jobs))
    if not jobs and settings.launcher != "local":  # nothing to place: nothing to dry-run
        launcher = launchers.choose(
            dataclasses.replace(settings, launcher="local"), spec.target, 1, 0
        )
    place = launchers.Placement(
        session.console, spec.experiment_dir, settings, spec.target, session.nodes,
        session.warned,
    )  # fmt: skip
    tracker = _tracker(session, spec.compiled.spec)
    experiment_dir = spec.experiment_dir
    with _live_tracking(session, tracker, experiment_dir, failed):
        if jobs or settings.dry_run:
            left = {job.name: len(runs_of(job)) for job in jobs}
            job_of = {run.name: job.name for job in jobs for run in runs_of(job)}
            for result in launcher.launch(jobs, place):
                if result.error:
                    failed[result.name] = result.error
                left[job_of[result.name]] -= 1
                if not left[job_of[result.name]]:  # a job's last run: send what it logged
                    _sync(session, tracker, experiment_dir, failed)
    return settings.dry_run


def _jobs(
    session: Session, spec: LoadedSpec, configs: dict[str, Any], resumes: dict[str, bool]
) -> list[Job]:
    """The units of placement: each ensemble `target.ensemble` forms is one (one process
    trains its members together), every other run is one on its own."""
    target = spec.target
    ddp = target.strategy == "ddp"
    module = train_module(spec.package_dir)
    jobs: list[Job] = []
    for group in _ensembles(spec.compiled.spec, configs):
        members = tuple(
            RunJob(
                name=name,
                package_dir=str(spec.package_dir.resolve()),
                run=dataclasses.asdict(configs[name]),
                run_dir=str((spec.experiment_dir / name).resolve()),
                device=session.device,
                resume=resumes[name],
                steps=module.total_steps(configs[name]),
                devices=target.devices if ddp else 1,
                ddp=ddp,
            )
            for name in group
        )
        jobs.append(EnsembleJob(members) if len(members) > 1 else members[0])
    return jobs


def _finish(
    session: Session,
    spec: LoadedSpec,
    failed: dict[str, str],
    report: bool,
    upstream_of: str | None,
) -> Path | None:
    """The report of what finished; the failures, as one error naming each."""
    from expc.runtime.report import write_report

    experiment_dir = spec.experiment_dir
    finished = [n for n in spec.names if n not in failed]
    for name, why in failed.items():  # what a dependent spec must not read
        session.unavailable[(str(spec.path), spec.profile, name)] = why
    report_path = None
    if report and run_dirs_with_metrics(experiment_dir):
        report_path = write_report(experiment_dir)
    tracker = _tracker(session, spec.compiled.spec)
    _sync(session, tracker, experiment_dir, failed)  # the report too; a no-op untracked
    if failed:
        where = f"{upstream_of}'s upstream " if upstream_of else ""
        listed = ", ".join(f"{name} ({why})" for name, why in failed.items())
        if finished:
            tail = "; the others finished" + (" and are in the report" if report_path else "")
        else:
            tail = "; none finished" + ("" if report_path else ", so no report was written")
        raise RunError(f"{len(failed)} of {len(spec.names)} {where}runs failed: {listed}{tail}")
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


def run_dirs_with_metrics(experiment_dir: Path) -> list[Path]:
    from expc.runtime.report import run_dirs

    return run_dirs(experiment_dir) if experiment_dir.is_dir() else []
