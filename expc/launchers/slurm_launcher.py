"""`expc run SPEC --launcher slurm`: the runs as one SLURM job array, through submitit.

Each array element calls `worker.execute_job(job)` on its node (one run, or an ensemble of
runs that `target { ensemble }` trains together in one job), so the run folder it writes is
the one a local run writes; the folders (and the generated package) must be on a file
system the nodes share, as they are on a cluster's home or scratch. The driver waits for
the array, drawing each run's progress from the steps in its metrics.jsonl, and reports
every run's result as the local runner does. `--dry-run` prints the sbatch script that
would be submitted, options included, and submits nothing. `executor = local` (submitit's
local executor) runs the same array as processes on this machine, which is how the tests
exercise this path without a cluster.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from expc.launchers.base import LaunchSettings, Placement, show_result
from expc.runtime.errors import RunError
from expc.runtime.worker import Job, JobResult, execute_job, runs_of

POLL_S = 1.0


def _submitit() -> Any:
    try:
        import submitit
    except ImportError:
        raise RunError("--launcher slurm needs submitit: pip install 'expc[slurm]'") from None
    return submitit


def parameters(settings: LaunchSettings, jobs: list[Job], gpus: int) -> dict[str, Any]:
    """submitit's executor parameters (its portable names, and slurm_* for sbatch). Each
    array element reserves `--cpus`, else what the largest run uses (threads x ranks)."""
    cpus = settings.cpus or max((job.cpus for job in jobs), default=1)
    chosen: dict[str, Any] = {
        "name": "expc",
        "timeout_min": settings.time,
        "cpus_per_task": cpus,
        "gpus_per_node": gpus,
        "tasks_per_node": 1,  # a DDP run starts its own processes (torchrun) inside the job
        "nodes": 1,
        "slurm_array_parallelism": settings.array_parallelism,
    }
    if settings.mem_gb is not None:
        chosen["mem_gb"] = settings.mem_gb
    for name in ("partition", "account", "qos", "constraint"):
        value = getattr(settings, name)
        if value is not None:
            chosen[f"slurm_{name}"] = value
    if settings.setup:
        chosen["slurm_setup"] = list(settings.setup)
    if settings.extra:
        chosen["slurm_additional_parameters"] = dict(settings.extra)
    return chosen


def sbatch_script(settings: LaunchSettings, jobs: list[Job], folder: Path, gpus: int) -> str:
    """The sbatch script submitit writes for this array (what --dry-run prints)."""
    from submitit.slurm.slurm import _make_sbatch_string

    chosen = parameters(settings, jobs, gpus)
    # AutoExecutor's portable names -> SlurmExecutor's, as submitit converts them.
    renamed = {
        "job_name": chosen.pop("name"),
        "time": chosen.pop("timeout_min"),
        "cpus_per_task": chosen.pop("cpus_per_task"),
        "gpus_per_node": chosen.pop("gpus_per_node"),
        "ntasks_per_node": chosen.pop("tasks_per_node"),
        "nodes": chosen.pop("nodes"),
    }
    if "mem_gb" in chosen:
        renamed["mem"] = f"{chosen.pop('mem_gb')}GB"
    renamed.update({key.removeprefix("slurm_"): value for key, value in chosen.items()})
    command = " ".join(
        [shlex.quote(sys.executable), "-u -m submitit.core._submit", shlex.quote(str(folder))]
    )
    return _make_sbatch_string(command=command, folder=folder, map_count=len(jobs), **renamed)


class SlurmLauncher:
    """The jobs as one job array, each element reserving the CPUs its run uses."""

    def launch(self, jobs: Sequence[Job], place: Placement) -> Iterable[JobResult]:
        place.check_cpus(jobs)
        return run(list(jobs), place.settings, place.console, place.experiment_dir, place.gpus)


def _progress(run_dir: Path) -> tuple[int, float | None]:
    """The step and training loss of metrics.jsonl's last row ((0, None) before the first):
    what the driver draws of a run that trains on another node."""
    import json

    try:
        with (run_dir / "metrics.jsonl").open("rb") as file:
            lines = file.read().splitlines()
    except OSError:
        return 0, None
    for line in reversed(lines):
        try:
            row = json.loads(line)
            loss = row.get("train_loss")
            return int(row.get("step", 0)), loss if isinstance(loss, float) else None
        except (ValueError, AttributeError, TypeError):
            continue  # a torn last line, being written
    return 0, None


def run(
    jobs: list[Job],
    settings: LaunchSettings,
    console: Console,
    experiment_dir: Path,
    gpus: int = 0,
) -> Iterable[JobResult]:
    """Submit the jobs as one array and yield each result as its job ends."""
    submitit = _submitit()
    folder = Path(settings.folder) if settings.folder else experiment_dir / ".submitit"
    cluster = settings.cluster or "slurm"
    if settings.dry_run:
        if cluster == "slurm":
            console.print(f"# would submit {_counted(jobs)} as one job array:")
            console.print(sbatch_script(settings, jobs, folder, gpus), markup=False)
        else:
            console.print(f"# would run {_counted(jobs)} with submitit's {cluster} executor")
        for index, job in enumerate(jobs):
            for run in runs_of(job):
                console.print(f"#   [{index}] {run.name} -> {run.run_dir}", markup=False)
        return
    try:
        executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    except (RuntimeError, ValueError) as error:
        raise RunError(
            f"cannot submit to {cluster}: {error}; no run was submitted "
            "(`--dry-run` prints the sbatch script without a cluster)"
        ) from None
    executor.update_parameters(**parameters(settings, jobs, gpus))
    try:
        submitted = executor.map_array(execute_job, jobs)
    except (subprocess.CalledProcessError, OSError, submitit.core.utils.FailedJobError) as error:
        detail = getattr(error, "stderr", None) or getattr(error, "output", None) or error
        if isinstance(detail, bytes):
            detail = detail.decode(errors="replace")
        raise RunError(
            f"the job array was refused: {str(detail).strip()}; no run was submitted"
        ) from None
    ids = sorted({str(job.job_id).split("_")[0] for job in submitted})
    console.print(
        f"submitted {_counted(jobs)} to {cluster} (job {', '.join(ids)}); logs in {folder}"
    )
    waiting = dict(zip(submitted, jobs, strict=True))
    try:
        yield from _wait(submitit, waiting, jobs)
    except KeyboardInterrupt:
        console.print(
            f"[yellow]stopped waiting[/]: the job array keeps running on {cluster} "
            f"(job {', '.join(ids)}; `scancel` stops it); `expc run` again later skips "
            "the runs that finished and `--resume` continues the others"
        )
        raise


def _counted(jobs: list[Job]) -> str:
    """ "8 runs", or "8 runs as 3 jobs" when ensembles train several runs in one job."""
    runs = sum(len(runs_of(job)) for job in jobs)
    text = f"{runs} run{'s' if runs != 1 else ''}"
    return text if runs == len(jobs) else f"{text} as {len(jobs)} jobs"


def _wait(submitit: Any, waiting: dict[Any, Job], jobs: list[Job]) -> Iterable[JobResult]:
    """Each run's result as its job ends, with a progress bar per run drawn from the steps
    in its metrics.jsonl (the run folders are on a file system the driver sees)."""
    from expc.runtime.progress import progress_bar

    with progress_bar() as bar:
        bars = {
            run.name: bar.add_task(run.name, total=run.steps, loss=float("nan"))
            for job in jobs
            for run in runs_of(job)
        }
        while waiting:
            for handle, job in list(waiting.items()):
                for run in runs_of(job):
                    step, loss = _progress(Path(run.run_dir))
                    bar.update(
                        bars[run.name], completed=step, **({} if loss is None else {"loss": loss})
                    )
                if not handle.done():
                    continue
                del waiting[handle]
                for run, result in zip(runs_of(job), _results(submitit, handle, job), strict=True):
                    show_result(bar, bars[run.name], run, result)
                    yield result
            if waiting:
                time.sleep(POLL_S)


def _results(submitit: Any, handle: Any, job: Job) -> list[JobResult]:
    """A finished job's JobResults; a job that died (timeout, preempted, killed, a node
    lost) fails each of its runs with a message that says where its log is."""
    try:
        return handle.result()
    except (submitit.core.utils.UncompletedJobError, submitit.core.utils.FailedJobError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else "no result"
        return [
            JobResult(
                run.name,
                None,
                f"job {handle.job_id} ended without a result ({first}); log: "
                f"{handle.paths.stderr}; `expc run ... --resume` continues it from its last "
                "checkpoint",
            )
            for run in runs_of(job)
        ]
