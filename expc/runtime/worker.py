"""One run as a unit of work that any process can execute: the local runner, a `--jobs`
child process (`python -m expc.runtime.worker`), a Ray worker or a SLURM job all call
`execute(job)`, so a run trains the same way, and writes the same run folder, whichever
launcher placed it.

A `RunJob` is plain data (picklable, JSON-able): the generated package's folder, the run's
config as `dataclasses.asdict` gives it (its `target.threads` resolved: the threads it
trains with, in whichever process), the run folder, and how to start. An
`EnsembleJob` holds several RunJobs that `target { ensemble }` trains together in one
process (one vectorized step); it is placed as one unit and gives back one JobResult per
member, so a launcher treats a member as any other run. A worker that
executes many jobs keeps the generated module it imported (keyed by the package folder and
the mtime of its files), so a warm worker pays interpreter, torch and import start-up once
per sweep, not once per run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

from expc.runtime.errors import RunError
from expc.runtime.seeding import run_threads, use_threads


@dataclass(frozen=True)
class RunJob:
    """What a worker needs to train one run of a compiled spec."""

    name: str
    package_dir: str  # the generated package (absolute)
    run: dict[str, Any]  # dataclasses.asdict(Run), its target.threads resolved
    run_dir: str  # absolute
    device: str | None = None
    resume: bool = False
    steps: int = 0  # for progress displays
    devices: int = 1  # DDP: processes per node (torchrun), 1: a plain run
    ddp: bool = False  # `strategy = ddp`: trained through torchrun, even on one device
    cwd: str = field(default_factory=os.getcwd)  # relative spec paths (corpora) resolve here

    @property
    def threads(self) -> int:
        """The torch threads the run trains with (per rank under DDP): its config's."""
        target = self.run.get("target")
        return run_threads(target.get("threads", 0) if isinstance(target, dict) else 0)

    @property
    def cpus(self) -> int:
        """The CPUs the run uses: its threads on each of its ranks."""
        return self.threads * self.devices


@dataclass(frozen=True)
class EnsembleJob:
    """Runs that train together as one vectorized ensemble: one process, one unit of
    placement (their CPUs and GPU are the ensemble's), one result per member."""

    members: tuple[RunJob, ...]

    @property
    def name(self) -> str:
        return "ensemble of " + ", ".join(job.name for job in self.members)

    @property
    def devices(self) -> int:
        return 1  # ensembles never run under DDP

    @property
    def threads(self) -> int:
        return self.members[0].threads

    @property
    def cpus(self) -> int:
        return self.threads

    def resumed(self) -> EnsembleJob:
        return EnsembleJob(tuple(replace(job, resume=True) for job in self.members))


Job = RunJob | EnsembleJob


def runs_of(job: Job) -> tuple[RunJob, ...]:
    """The runs a job trains: its members, or the run itself."""
    return job.members if isinstance(job, EnsembleJob) else (job,)


def resumed(job: Job) -> Job:
    """The job again, continuing from its checkpoints (a retry after a worker died)."""
    return job.resumed() if isinstance(job, EnsembleJob) else replace(job, resume=True)


def job_to_json(job: Job) -> str:
    """A job as JSON (what a `--jobs` child process reads)."""
    members = [asdict(run) for run in runs_of(job)]
    return json.dumps({"ensemble": isinstance(job, EnsembleJob), "runs": members})


def job_from_json(text: str) -> Job:
    data = json.loads(text)
    runs = tuple(RunJob(**run) for run in data["runs"])
    return EnsembleJob(runs) if data["ensemble"] else runs[0]


@dataclass(frozen=True)
class JobResult:
    name: str
    final: dict[str, Any] | None  # the last metrics row, when the run finished
    error: str | None = None  # one line, when it did not
    seconds: float = 0.0
    pid: int = 0  # the process that executed it (a warm worker runs several)


class StepSink(Protocol):
    """Where a run's progress goes: the generated loops call `advance`."""

    def advance(self, loss: float | None = None, steps: int = 1) -> None: ...


_MODULES: dict[tuple[str, float], ModuleType] = {}


def train_module(package_dir: str | Path) -> ModuleType:
    """The generated package's train module, imported once per worker (again when its
    files change)."""
    from expc.runtime.loader import load_train_module

    folder = Path(package_dir)
    stamp = max((p.stat().st_mtime for p in folder.glob("*.py")), default=0.0)
    key = (str(folder.resolve()), stamp)
    if key not in _MODULES:
        _MODULES.clear()  # a recompiled package replaces the old one
        _MODULES[key] = load_train_module(folder)
    return _MODULES[key]


def describe(error: BaseException, run: str) -> str:
    """A run's failure in one line; an OS error (a full disk, a file too large, no
    permission) names the run and the path it could not write."""
    if isinstance(error, OSError) and not isinstance(error, RunError):
        where = f" {error.filename}" if error.filename else ""
        return f"run {run} could not write{where}: {error.strerror or error}"
    return str(error)


def log_failure(run_dir: Path, error: object) -> None:
    """The error in the run's job.log, unless its folder is not ours to write."""
    log = run_dir / "job.log"
    if run_dir.is_dir() and not run_dir.is_symlink() and not log.is_symlink():
        try:
            log.write_text(f"error: {error}\n")
        except OSError:
            pass


def execute(job: RunJob, progress: StepSink | None = None) -> JobResult:
    """Train one run into its folder; a failure is returned, not raised, so the caller's
    other runs go on. Only a user-visible failure (RunError, OSError) is caught: anything
    else is a bug and propagates with its traceback."""
    from expc.runtime import integrity
    from expc.runtime.run_folder import claim

    started = time.perf_counter()
    run_dir = Path(job.run_dir)
    os.chdir(job.cwd)
    try:
        with claim(run_dir):  # one writer per run folder, whichever machine it is on
            if job.ddp or job.devices > 1:
                final = _torchrun(job)
            else:
                final = _train_here(job, progress)
    except (RunError, OSError) as error:
        problem = describe(error, job.name)
        log_failure(run_dir, problem)
        return JobResult(job.name, None, problem, time.perf_counter() - started, os.getpid())
    integrity.record(run_dir)  # what "finished" is checked against
    return JobResult(job.name, final, None, time.perf_counter() - started, os.getpid())


def execute_job(job: Job, progress: dict[str, StepSink] | None = None) -> list[JobResult]:
    """Train a job, one run or an ensemble, into its folders: one JobResult per run, in the
    order of `runs_of(job)`; `progress` maps run names to their sinks."""
    sinks = progress or {}
    if isinstance(job, RunJob):
        return [execute(job, sinks.get(job.name))]
    return execute_ensemble(job, sinks)


def execute_ensemble(job: EnsembleJob, progress: dict[str, StepSink]) -> list[JobResult]:
    """Train the members together (the generated `train_ensemble`). A member whose folder
    another process writes, or whose checkpoint cannot be resumed, fails alone with its
    reason and the others train; a failure that stops the ensemble fails each member."""
    from contextlib import ExitStack

    from expc.runtime import integrity
    from expc.runtime.loader import run_from_dict
    from expc.runtime.run_folder import claim

    started = time.perf_counter()
    first = job.members[0]
    os.chdir(first.cwd)
    refused: dict[str, str] = {}  # members that cannot train: the others still do
    theirs: set[str] = set()  # folders another process holds: not ours to write a log into
    with ExitStack() as claims:
        members = []
        for member in job.members:  # one writer per run folder
            try:
                claims.enter_context(claim(Path(member.run_dir)))
                members.append(member)
            except (RunError, OSError) as error:
                refused[member.name] = describe(error, member.name)
                theirs.add(member.name)
        finals: dict[str, Any] = {}
        try:
            if members:
                use_threads(first.threads)
                module = train_module(first.package_dir)
                trained = module.train_ensemble(
                    [run_from_dict(module, member.run) for member in members],
                    [Path(member.run_dir) for member in members],
                    [progress.get(member.name) for member in members],
                    device=first.device,
                    resume=[member.resume for member in members],
                )
                finals = {m.name: final for m, final in zip(members, trained, strict=True)}
        except (RunError, OSError) as error:  # the ensemble itself stopped: every member
            problem = describe(error, ", ".join(member.name for member in members))
            refused.update({member.name: problem for member in members})
    seconds = time.perf_counter() - started
    results = []
    for member in job.members:
        final = finals.get(member.name)
        if isinstance(final, RunError):
            refused[member.name] = describe(final, member.name)
        if member.name in refused:
            if member.name not in theirs:
                log_failure(Path(member.run_dir), refused[member.name])
            results.append(JobResult(member.name, None, refused[member.name], seconds, os.getpid()))
            continue
        integrity.record(Path(member.run_dir))  # what "finished" is checked against
        results.append(JobResult(member.name, final, None, seconds, os.getpid()))
    return results


def _train_here(job: RunJob, progress: StepSink | None) -> dict[str, Any]:
    from expc.runtime.loader import run_from_dict

    use_threads(job.threads)  # the generated loop sets them too: the run's config says so
    module = train_module(job.package_dir)
    config = run_from_dict(module, job.run)
    return module.train(config, Path(job.run_dir), progress, device=job.device, resume=job.resume)


def torchrun_command(
    package_dir: str, launch_file: Path, devices: int, nodes: tuple[int, int, str, int] | None
) -> list[str]:
    """torchrun over expc.runtime.entry: standalone on one node, or one node of several."""
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={devices}"]
    if nodes is None:
        command.append("--standalone")
    else:
        count, rank, address, port = nodes
        command += [f"--nnodes={count}", f"--node-rank={rank}"]
        command += [f"--master-addr={address}", f"--master-port={port}"]
    return command + [
        "-m",
        "expc.runtime.entry",
        str(Path(package_dir).resolve()),
        str(launch_file),
    ]


def run_torchrun(job: RunJob, nodes: tuple[int, int, str, int] | None = None) -> int:
    """Train a DDP run through torchrun (this machine's ranks; `nodes`: one node of several),
    its output in the run's job.log; torchrun's exit code. Each rank trains with the run's
    threads, so a node uses threads x devices CPUs."""
    run_dir = Path(job.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    launch_file = run_dir / "launch.json"
    launch = {"run": job.run, "out_dir": job.run_dir, "device": job.device, "resume": job.resume}
    launch_file.write_text(json.dumps(launch, indent=2) + "\n")
    env = {**os.environ, "OMP_NUM_THREADS": str(job.threads)}
    command = torchrun_command(job.package_dir, launch_file, job.devices, nodes)
    with (run_dir / "job.log").open("w") as log:
        return subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env).returncode


def _torchrun(job: RunJob) -> dict[str, Any]:
    """A DDP run from inside a worker that reserved its devices: torchrun, one node."""
    from expc.runtime.metrics import read_metrics

    code = run_torchrun(job)
    if code != 0:
        raise RunError(f"torchrun exited with {code} (log: {Path(job.run_dir) / 'job.log'})")
    rows = read_metrics(Path(job.run_dir))
    return rows[-1] if rows else {}


def summary(row: dict[str, Any] | None) -> str:
    """A finished run's last metrics in one line."""
    if not row:
        return "done"
    return ", ".join(
        f"{k}={v:.4g}"
        for k, v in row.items()
        if k not in ("tokens", "lr") and isinstance(v, int | float) and not isinstance(v, bool)
    )


def main(argv: list[str] | None = None) -> int:
    """`python -m expc.runtime.worker JOB_JSON RESULTS_JSON`: train one job (what a `--jobs`
    child process does), each run's end on stdout, the JobResults in RESULTS_JSON; exit 1
    when a run failed."""
    job_file, results_file = (argv if argv is not None else sys.argv[1:])[:2]
    job = job_from_json(Path(job_file).read_text())
    results = execute_job(job)
    for result in results:
        print(
            f"{result.name}: "
            + (f"failed: {result.error}" if result.error else summary(result.final))
        )
    Path(results_file).write_text(json.dumps([asdict(result) for result in results]))
    return 1 if any(result.error for result in results) else 0


if __name__ == "__main__":
    sys.exit(main())
