"""The local runner: each job trains in this process, with a progress bar per run.

Ensembles first (one `worker.EnsembleJob`: the generated `train_ensemble` trains its
members together), then every run on its own; a run that fails with a user error is
reported and the next one starts. The threads a run trains with are its config's (the
generated loop sets them), never this process's setting.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from expc.launchers.base import Placement, dry_run_here, note_local_cpus
from expc.runtime.worker import (
    EnsembleJob,
    Job,
    JobResult,
    RunJob,
    execute,
    execute_ensemble,
    summary,
)


class InProcessLauncher:
    def launch(self, jobs: Sequence[Job], place: Placement) -> Iterator[JobResult]:
        from expc.runtime.progress import progress_bar

        if place.settings.dry_run:
            yield from dry_run_here(jobs, place)
            return
        note_local_cpus(place)
        with progress_bar() as bar:
            for job in jobs:
                if isinstance(job, EnsembleJob):
                    yield from _ensemble(job, bar)
            for job in jobs:
                if isinstance(job, RunJob):
                    yield _run(job, bar)


def _ensemble(job: EnsembleJob, bar: Any) -> list[JobResult]:
    """One ensemble: its members' folders are claimed, recorded and summarised as runs
    trained on their own; a failure that stops it is shown once, for the ensemble, and a
    member's own failure (a checkpoint it cannot resume from) as that member's."""
    from expc.runtime.progress import Progress

    names = [member.name for member in job.members]
    sinks = {member.name: Progress(bar, member.name, member.steps) for member in job.members}
    bar.console.print(f"[bold]ensemble[/] of {len(names)} runs: {', '.join(names)}")
    results = execute_ensemble(job, sinks)
    errors = {result.error for result in results if result.error}
    if len(errors) == 1 and all(result.error for result in results):  # the ensemble stopped
        bar.console.print(f"[bold red]{job.name}: failed[/]: {errors.pop()}")
        return results
    for result in results:  # a member's own fault is shown as that member's
        if result.error:
            bar.console.print(f"[bold red]{result.name}: failed[/]: {result.error}")
        else:
            bar.console.print(f"[bold]{result.name}[/]: {summary(result.final)}")
    return results


def _run(job: RunJob, bar: Any) -> JobResult:
    from expc.runtime.progress import Progress

    result = execute(job, Progress(bar, job.name, job.steps))
    if result.error:  # this run cannot go on; the others can
        bar.console.print(f"[bold red]{job.name}: failed[/]: {result.error}")
    else:
        bar.console.print(f"[bold]{job.name}[/]: {summary(result.final)}")
    return result
