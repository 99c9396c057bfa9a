"""`expc run`: compile if needed, resolve runs with profile and overrides, execute the
generated code in-process with a progress bar, then write the experiment report."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from rich.console import Console

from expc.compiler import (
    CompileError,
    Diagnostic,
    compile_source,
    components,
    parse_overrides,
    resolve,
)
from expc.compiler.diagnostics import did_you_mean
from expc.compiler.plan import Plan
from expc.compiler.source import SourceFile
from expc.runtime.device import resolve_device
from expc.runtime.errors import RunError
from expc.runtime.loader import load_train_module
from expc.runtime.metrics import read_metrics


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


def execute(
    spec_path: Path,
    variants: list[str],
    profile: str | None,
    sets: list[str],
    out_dir: Path,
    generated: Path,
    console: Console,
    device: str | None = None,
    resume: bool = False,
    force: bool = False,
    jobs: int = 1,
    report: bool = True,
    nodes: tuple[int, int, str, int] | None = None,
) -> Path | None:
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
    module = load_train_module(package_dir)
    experiment_dir = out_dir / experiment
    experiment_dir.mkdir(parents=True, exist_ok=True)
    (experiment_dir / "spec.json").write_text(
        json.dumps(
            {
                "source": source.name,
                "sha256": source.sha256,
                "runs": [r.name for r in resolved.runs],
                # The backend's analysis (e.g. a depth table) that write_report adds.
                "report": components.for_config(compiled.spec.config).report,
            },
            indent=2,
        )
        + "\n"
    )
    runs = {r.name: r for r in resolved.runs}
    for name in names:  # run names are validated; this guards the invariant anyway
        if not (experiment_dir / name).resolve().is_relative_to(experiment_dir.resolve()):
            raise RunError(f"run name {name!r} would leave {experiment_dir}")

    def config_of(name: str):  # noqa: ANN202 - the generated module's Run dataclass
        values = plan.run_values(runs[name].config)
        return module.Run(
            name,
            **values.get("run", {}),
            **{
                section: getattr(module, cls)(**values.get(section, {}))
                for section, cls in plan.sections()
            },
        )

    pending = []
    for name in names:
        if not force and _finished(experiment_dir / name, dataclasses.asdict(config_of(name))):
            console.print(
                f"[bold]{name}[/]: finished earlier with this config, skipped (--force reruns)"
            )
        else:
            pending.append(name)
    if target.strategy == "ddp":
        failed = []
        for name in pending:
            config = config_of(name)
            launch = {
                "run": dataclasses.asdict(config),
                "out_dir": str(experiment_dir / name),
                "device": device,
                "resume": resume,
            }
            if not _torchrun(package_dir, experiment_dir / name, launch, config, nodes, console):
                failed.append(name)
    elif jobs > 1 and len(pending) > 1:
        flags = _child_flags(profile, sets, device, resume, generated)
        failed = _run_jobs(spec_path, pending, flags, experiment_dir, out_dir, jobs, console)
    else:
        failed = []
        with progress_bar() as bar:
            for name in pending:
                config = config_of(name)
                task = Progress(bar, name, getattr(config.train, "total_steps", config.train.steps))
                try:
                    final = module.train(
                        config, experiment_dir / name, task, device=device, resume=resume
                    )
                except RunError as error:  # this run cannot go on; the others can
                    failed.append(name)
                    (experiment_dir / name).mkdir(parents=True, exist_ok=True)
                    (experiment_dir / name / "job.log").write_text(f"error: {error}\n")
                    bar.console.print(f"[bold red]{name}: failed[/]: {error}")
                    continue
                bar.console.print(f"[bold]{name}[/]: {_summary(final)}")
    report_path = write_report(experiment_dir) if report else None
    if failed:
        raise RunError(
            f"{len(failed)} of {len(pending)} runs failed: "
            + ", ".join(f"{name} (see {experiment_dir / name / 'job.log'})" for name in failed)
            + "; the others finished and are in the report"
        )
    return report_path


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
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={devices}"]
    if nodes is None:
        command.append("--standalone")
    else:
        count, rank, address, port = nodes
        command += [f"--nnodes={count}", f"--node-rank={rank}"]
        command += [f"--master-addr={address}", f"--master-port={port}"]
    command += ["-m", "expc.runtime.entry", str(package_dir.resolve()), str(launch_file)]
    name = run_dir.name
    threads = max(1, (os.cpu_count() or 1) // devices)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    with console.status(f"{name}: torchrun, {devices} process(es) per node"):
        with (run_dir / "job.log").open("w") as log:
            code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
    rows = read_metrics(run_dir)
    if code == 0:
        console.print(f"[bold]{name}[/]: {_summary(rows[-1]) if rows else 'done'}")
        return True
    console.print(f"[bold red]{name}: failed[/] (log: {run_dir / 'job.log'})")
    return False


def _summary(row: dict) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in row.items() if k not in ("tokens", "lr"))


def _finished(run_dir: Path, config: dict) -> bool:
    """A run that wrote its summary with exactly this config needs no rerun."""
    try:
        written = json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError):
        return False
    same = written == json.loads(json.dumps(config))
    return same and (run_dir / "summary.json").exists()


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
    names: list[str],
    flags: list[str],
    experiment_dir: Path,
    out_dir: Path,
    jobs: int,
    console: Console,
) -> list[str]:
    """Each run in its own `expc run` process, `jobs` at a time; a failure stops only itself."""
    threads = max(1, (os.cpu_count() or 1) // jobs)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}

    def launch(name: str) -> int:
        log_path = experiment_dir / name / "job.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "expc", "run", str(spec_path), "--variant", name]
        command += ["--out", str(out_dir), "--no-report", *flags]
        with log_path.open("w") as log:
            return subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env).returncode

    failed = []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(launch, name): name for name in names}
        console.print(f"running {len(names)} runs, {jobs} at a time ({threads} thread(s) each)")
        for future in as_completed(futures):
            name = futures[future]
            if future.result() == 0:
                rows = read_metrics(experiment_dir / name)
                console.print(f"[bold]{name}[/]: {_summary(rows[-1]) if rows else 'done'}")
            else:
                failed.append(name)
                console.print(
                    f"[bold red]{name}: failed[/] (log: {experiment_dir / name / 'job.log'})"
                )
    return failed
