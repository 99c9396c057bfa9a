"""`expc run SPEC --launcher ray [--address ADDR]`: each run is a Ray task (an ensemble of
runs, `target { ensemble }`, one task that trains its members together).

Ray reuses a task's worker process for later tasks, and `worker.execute` keeps the
generated module it imported, so a sweep of short runs pays interpreter and torch start-up
once per worker, not once per run. A DDP run is one task that reserves its devices and runs
torchrun inside. Progress comes back through a small actor that every task reports its steps
to, so the driver draws one bar per run as the local runner does.

A worker that dies (killed, out of memory, its node lost) fails only its run: it is reported
with what to do (`--resume` continues from the run's last checkpoint), or retried with
resume when `--retries` asks for it. Ray starts locally when no address is given, once per
command (the upstream specs a spec reads use the same one), and is shut down at the end of
the command; a cluster given by address is left running.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from expc.launchers.base import LaunchSettings, Placement, show_result
from expc.runtime.errors import RunError
from expc.runtime.worker import Job, JobResult, execute_job, log_failure, resumed, runs_of

# Seconds between two progress reports of one run: enough to keep the bars live without
# making the actor a bottleneck for a sweep of many fast runs.
REPORT_EVERY_S = 0.5


def _ray(local: bool = False) -> Any:
    """Ray, imported; for a local Ray (no address) set up first to stay on this machine:
    its node on the loopback address (Ray's own setting for single-machine use, read at
    import), and token authentication on, as Ray's default is, without its notice."""
    if local and "ray" not in sys.modules:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    try:
        import ray
    except ImportError:
        raise RunError("--launcher ray needs Ray: pip install 'expc[ray]'") from None
    return ray


class _Board:
    """An actor: run name -> (steps done, latest loss), written by tasks, read by the driver."""

    def __init__(self) -> None:
        self.steps: dict[str, tuple[int, float | None]] = {}

    def update(self, name: str, steps: int, loss: float | None) -> None:
        self.steps[name] = (steps, loss)

    def snapshot(self) -> dict[str, tuple[int, float | None]]:
        return dict(self.steps)


class _BoardSink:
    """The generated loop's progress sink inside a Ray task: counts steps, reports them to
    the board at most every REPORT_EVERY_S (fire and forget)."""

    def __init__(self, board: Any, name: str) -> None:
        self.board, self.name = board, name
        self.done, self.loss = 0, None
        self.sent = 0.0

    def advance(self, loss: float | None = None, steps: int = 1) -> None:
        self.done += steps
        if loss is not None:
            self.loss = float(loss)
        now = time.monotonic()
        if now - self.sent >= REPORT_EVERY_S:
            self.sent = now
            self.board.update.remote(self.name, self.done, self.loss)


def _task(job: Job, board: Any) -> list[JobResult]:
    """What a Ray worker executes for one job: its runs' results, in order."""
    sinks = {run.name: _BoardSink(board, run.name) for run in runs_of(job)}
    results = execute_job(job, sinks)
    for sink in sinks.values():
        board.update.remote(sink.name, sink.done, sink.loss)
    return results


class RayLauncher:
    """Each job a Ray task reserving the CPUs its run uses (`--cpus` to reserve others)."""

    def launch(self, jobs: Sequence[Job], place: Placement) -> Iterable[JobResult]:
        settings, gpus = place.settings, place.gpus
        place.check_cpus(jobs)
        if settings.dry_run:
            place.console.print(
                f"# would run {len(jobs)} Ray tasks at {settings.address or 'a local Ray'}, "
                f"each with num_cpus={_per_run(jobs, place)}, num_gpus={gpus}: "
                + ", ".join(job.name for job in jobs)
            )
            return iter(())
        return run(list(jobs), place, gpus=gpus)


def _per_run(jobs: Sequence[Job], place: Placement) -> str:
    """The CPUs each task reserves, as one figure ("1") or a range ("1-4")."""
    counts = [place.cpus_for(job) for job in jobs] or [place.settings.cpus or 1]
    low, high = min(counts), max(counts)
    return str(low) if low == high else f"{low}-{high}"


def connect(settings: LaunchSettings, console: Console, cpus: int = 1) -> bool:
    """Join the cluster at settings.address, or start a local Ray (with at least `cpus`
    CPUs, what the largest task reserves, so that no task waits forever for a machine
    that is not there); True when this command started it (and so shuts it down)."""
    ray = _ray()
    if ray.is_initialized():
        return False
    options: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,  # each run writes its own job.log; the bars show progress
        "configure_logging": False,
    }
    if settings.address is None:
        options["num_cpus"] = max(os.cpu_count() or 1, cpus)
        with console.status("starting a local Ray"):
            ray.init(**options)
        return True
    _probe(settings.address)
    try:
        with console.status(f"connecting to Ray at {settings.address}"):
            ray.init(address=settings.address, **options)
    except (ConnectionError, RuntimeError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise RunError(
            f"could not reach a Ray cluster at {settings.address}: {first}; no run was started "
            "(start one with `ray start --head`, or leave out --address for a local Ray)"
        ) from None
    return False


def _probe(address: str, timeout_s: float = 5.0) -> None:
    """Refuse an address nothing listens on within seconds: ray.init itself waits for the
    cluster to appear for minutes, with no message, before giving up."""
    where = address.removeprefix("ray://")
    if where == "auto" or "://" in where:
        return  # Ray finds the address itself (a file of the running cluster), or another scheme
    host, _, port = where.rpartition(":")
    if not host or not port.isdigit():
        raise RunError(
            f"the Ray address {address!r} is not HOST:PORT (e.g. 127.0.0.1:6379, or "
            "ray://HOST:10001 for Ray Client); no run was started"
        )
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as error:
        raise RunError(
            f"could not reach a Ray cluster at {address}: {error.strerror or error}; no run was "
            "started (start one with `ray start --head`, or leave out --address for a local Ray)"
        ) from None


def run(jobs: list[Job], place: Placement, gpus: int = 0) -> Iterable[JobResult]:
    """Run the jobs as Ray tasks; yields each result as it arrives. The local Ray this
    starts stays up for the command's other specs (see shutdown)."""
    global _STARTED_HERE
    settings, console = place.settings, place.console
    ray = _ray(local=settings.address is None)
    largest = max((place.cpus_for(job) for job in jobs), default=1)
    if settings.address is None:
        place.check_threads(largest, "a Ray task")
    _STARTED_HERE = connect(settings, console, largest) or _STARTED_HERE
    board = ray.remote(num_cpus=0)(_Board).remote()
    task = ray.remote(_task)

    def submit(job: Job) -> Any:
        return task.options(
            num_cpus=place.cpus_for(job),
            num_gpus=gpus,
            max_retries=0,  # retries are ours: a retry must resume, not start over
        ).remote(job, board)

    resources = ray.cluster_resources()
    count = sum(len(runs_of(job)) for job in jobs)
    runs = f"{count} run{'s' if count != 1 else ''}"
    if count != len(jobs):
        runs += f" as {len(jobs)} tasks"
    console.print(
        f"running {runs} on Ray ({int(resources.get('CPU', 0))} CPUs, "
        f"{int(resources.get('GPU', 0))} GPUs; {_per_run(jobs, place)} CPU(s) per run)"
    )
    pending = {submit(job): job for job in jobs}
    yield from _gather(ray, pending, submit, board, settings)


def _gather(
    ray: Any,
    pending: dict[Any, Job],
    submit: Any,
    board: Any,
    settings: LaunchSettings,
) -> Iterable[JobResult]:
    """Each run's result as its task ends, with a bar per run fed by the board; a task whose
    worker died is submitted again with resume, `settings.retries` times at most."""
    from expc.runtime.progress import progress_bar

    jobs = list(pending.values())
    attempts = dict.fromkeys((job.name for job in jobs), 0)
    with progress_bar() as bar:
        bars = {
            run.name: bar.add_task(run.name, total=run.steps, loss=float("nan"))
            for job in jobs
            for run in runs_of(job)
        }
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=REPORT_EVERY_S)
            for name, (steps, loss) in ray.get(board.snapshot.remote()).items():
                fields = {} if loss is None else {"loss": loss}
                bar.update(bars[name], completed=steps, **fields)
            for ref in ready:
                job = pending.pop(ref)
                results = _results(ray, ref, job)
                died = any(r.error and r.error.startswith(_DIED) for r in results)
                if died and attempts[job.name] < settings.retries:
                    attempts[job.name] += 1
                    bar.console.print(
                        f"[yellow]{job.name}[/]: its worker died; resuming it "
                        f"(retry {attempts[job.name]} of {settings.retries})"
                    )
                    pending[submit(resumed(job))] = job
                    continue
                for run, result in zip(runs_of(job), results, strict=True):
                    show_result(bar, bars[run.name], run, result)
                    yield result


# Whether this process started the local Ray it is connected to (and so stops it).
_STARTED_HERE = False


def shutdown() -> None:
    """Stop the local Ray this command started (once, at its end: upstream specs and the
    spec itself share it); leave a cluster given by address running."""
    global _STARTED_HERE
    if _STARTED_HERE and "ray" in sys.modules:
        sys.modules["ray"].shutdown()
    _STARTED_HERE = False


_DIED = "the Ray worker running it died"


def _results(ray: Any, ref: Any, job: Job) -> list[JobResult]:
    """A task's JobResults; a task that died with its worker fails each of its runs."""
    try:
        return ray.get(ref)
    except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError) as error:
        why = type(error).__name__
    except ray.exceptions.RayTaskError as error:
        # Not a user mistake (those come back as a JobResult): a bug, whose traceback goes
        # into the runs' job.log while the sweep's other runs go on.
        cause = error.cause if isinstance(error.cause, BaseException) else error
        for run in runs_of(job):
            log_failure(Path(run.run_dir), error)
        return [
            JobResult(
                run.name, None, f"raised {type(cause).__name__}: {cause} (traceback in job.log)"
            )
            for run in runs_of(job)
        ]
    except ray.exceptions.RayError as error:
        why = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    return [
        JobResult(
            run.name,
            None,
            f"{_DIED} ({why}); `expc run ... --resume` continues it from its last checkpoint",
        )
        for run in runs_of(job)
    ]
