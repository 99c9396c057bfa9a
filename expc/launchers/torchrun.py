"""`strategy = ddp` on this machine: each run through torchrun (`--nproc-per-node` = the
target's devices; `--nnodes`/`--node-rank`/`--master-addr`/`--master-port` for one node of
several), one run at a time; rank 0 writes the run folder, every rank trains with the
run's threads (its config's `target.threads`), so a node uses threads x devices CPUs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from expc.launchers.base import Placement, dry_run_here, note_local_cpus
from expc.runtime import integrity
from expc.runtime.errors import RunError
from expc.runtime.metrics import read_metrics
from expc.runtime.run_folder import claim
from expc.runtime.worker import Job, JobResult, RunJob, run_torchrun, runs_of, summary


class TorchrunLauncher:
    def launch(self, jobs: Sequence[Job], place: Placement) -> Iterator[JobResult]:
        if place.settings.dry_run:
            yield from dry_run_here(jobs, place)
            return
        note_local_cpus(place)
        for run in (run for job in jobs for run in runs_of(job)):  # never an ensemble
            place.check_threads(
                run.cpus, f"{run.devices} torchrun ranks of {run.threads} thread(s) each"
            )
            yield _torchrun(run, place)


def _torchrun(job: RunJob, place: Placement) -> JobResult:
    """One DDP run; its end printed, its folder recorded where rank 0 wrote it here."""
    console, run_dir = place.console, Path(job.run_dir)
    shown = place.experiment_dir / job.name  # as the command named it
    try:
        with claim(run_dir):
            with console.status(f"{job.name}: torchrun, {job.devices} process(es) per node"):
                code = run_torchrun(job, place.nodes)
    except RunError as error:
        console.print(f"[bold red]{job.name}: failed[/]: {error}")
        return JobResult(job.name, None, str(error))
    if code != 0:
        console.print(f"[bold red]{job.name}: failed[/] (log: {shown / 'job.log'})")
        return JobResult(job.name, None, f"see {shown / 'job.log'}")
    rows = read_metrics(run_dir)
    if (run_dir / "metrics.jsonl").is_file():  # rank 0 is on this node
        integrity.record(run_dir)
    console.print(f"[bold]{job.name}[/]: {summary(rows[-1]) if rows else 'done'}")
    return JobResult(job.name, rows[-1] if rows else None)
