"""`expc run SPEC --jobs N`: each job (a run, or an ensemble: its members together) in its
own child process, N at a time; a failure stops only itself.

A child is `python -m expc.runtime.worker JOB RESULTS`: it trains the job the runner built,
as a Ray task or a SLURM array element does, and resolves nothing. Its output goes into
the run's `job.log` (an ensemble's into its first member's). Each run trains with the
threads its config names; N of them at a time beyond this machine's CPUs is warned about,
never fixed by giving the runs fewer threads (that would change their numbers).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from expc.launchers.base import Placement, dry_run_here, note_local_cpus
from expc.runtime import integrity
from expc.runtime.metrics import read_metrics
from expc.runtime.worker import Job, JobResult, job_to_json, runs_of, summary


class ProcessesLauncher:
    def __init__(self, jobs: int) -> None:
        self.jobs = jobs

    def launch(self, jobs: Sequence[Job], place: Placement) -> Iterator[JobResult]:
        if place.settings.dry_run:
            yield from dry_run_here(jobs, place)
            return
        note_local_cpus(place)
        low, high = min(job.threads for job in jobs), max(job.threads for job in jobs)
        each = str(low) if low == high else f"{low}-{high}"
        parallel = min(self.jobs, len(jobs))
        place.check_threads(
            parallel * high,
            f"--jobs {self.jobs} trains {parallel} runs of {each} thread(s) at a time",
        )
        units = "runs" if all(len(runs_of(job)) == 1 for job in jobs) else "runs and ensembles"
        with tempfile.TemporaryDirectory(prefix="expc-jobs-") as scratch:
            with ThreadPoolExecutor(max_workers=self.jobs) as pool:
                futures = {
                    pool.submit(_child, job, Path(scratch) / str(index)): job
                    for index, job in enumerate(jobs)
                }
                place.console.print(
                    f"running {len(jobs)} {units}, {self.jobs} at a time ({each} thread(s) each)"
                )
                for future in as_completed(futures):
                    yield from _results(futures[future], *future.result(), place)


def _log(job: Job) -> Path:
    return Path(runs_of(job)[0].run_dir) / "job.log"


def _child(job: Job, scratch: Path) -> tuple[list[JobResult] | None, float]:
    """Train the job in a child process: its results (None when it ended without them: it
    crashed or was killed), and when it started."""
    started = time.time()
    log_path = _log(job)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text("")
    job_file, results_file = scratch.with_suffix(".job.json"), scratch.with_suffix(".out.json")
    job_file.write_text(job_to_json(job))
    command = [sys.executable, "-m", "expc.runtime.worker", str(job_file), str(results_file)]
    env = {**os.environ, "OMP_NUM_THREADS": str(job.threads)}
    # Appending: a failing run writes its error into its job.log too (worker.log_failure).
    with log_path.open("a") as log:
        subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env, check=False)
    try:
        rows = json.loads(results_file.read_text())
    except (OSError, ValueError):
        return None, started
    return [JobResult(**row) for row in rows], started


def _results(
    job: Job, results: list[JobResult] | None, started: float, place: Placement
) -> Iterator[JobResult]:
    """Each run's end, as the child left it: its last metrics, or a failure that points at
    the log. A child that died fails the runs whose files it did not close."""
    log = place.experiment_dir / runs_of(job)[0].name / "job.log"  # as the command named it
    by_name = {result.name: result for result in results or ()}
    for run in runs_of(job):
        run_dir = Path(run.run_dir)
        result = by_name.get(run.name)
        done = result.error is None if result is not None else _finished(run_dir, started)
        if done:
            rows = read_metrics(run_dir)
            place.console.print(f"[bold]{run.name}[/]: {summary(rows[-1]) if rows else 'done'}")
            yield JobResult(run.name, rows[-1] if rows else None)
        else:
            place.console.print(f"[bold red]{run.name}: failed[/] (log: {log})")
            yield JobResult(run.name, None, f"see {log}")


def _finished(run_dir: Path, since: float) -> bool:
    """Whether a child closed the run's files (integrity.json written and verified)."""
    record = run_dir / "integrity.json"
    return (
        record.is_file() and record.stat().st_mtime >= since and integrity.problem(run_dir) is None
    )
