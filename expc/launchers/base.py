"""The launcher interface: the settings a launch reads, what a launcher is given beside its
jobs (`Placement`), the `Launcher` protocol, and the small pieces the five share."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from rich.console import Console

    from expc.compiler import ir
    from expc.runtime.worker import Job, JobResult, RunJob

LauncherKind = Literal["local", "ray", "slurm"]


@dataclass(frozen=True)
class LaunchSettings:
    """The spec's `launch` block with the command line's flags on top (flags win)."""

    launcher: LauncherKind = "local"
    # CPUs reserved per run (Ray: num_cpus, SLURM: cpus_per_task); default: what the run
    # uses, its threads x ranks. Never a run's threads: those are its config's.
    cpus: int | None = None
    gpus: int | None = None  # per run; default: the spec's target devices on cuda, else 0
    retries: int = 0  # a run whose worker died is started again (with --resume) this often
    # Ray
    address: str | None = None  # None: start a local Ray for this command
    # SLURM
    partition: str | None = None
    time: int = 60  # minutes
    mem_gb: int | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    array_parallelism: int = 256
    setup: tuple[str, ...] = ()  # shell lines run before each job (module load ...)
    folder: str | None = None  # submitit's logs; default: <experiment>/.submitit
    cluster: str | None = None  # submitit's executor: None = slurm, "local" runs jobs here
    dry_run: bool = False
    extra: dict[str, Any] = field(default_factory=dict)  # sbatch options as submitit names

    def updated(self, **values: Any) -> LaunchSettings:
        """These settings with the given values on top (None leaves a setting as it is)."""
        known = {f.name for f in fields(self)}
        return replace(self, **{k: v for k, v in values.items() if v is not None and k in known})

    def gpus_for(self, device: str, devices: int) -> int:
        if self.gpus is not None:
            return self.gpus
        return devices if device == "cuda" else 0


@dataclass
class Placement:
    """What a launcher is given besides its jobs: where to print, the launch settings, the
    spec's target block (device, devices, strategy) and, for DDP across machines, this
    node's part (`--nnodes ...`)."""

    console: Console
    experiment_dir: Path
    settings: LaunchSettings
    target: Any
    nodes: tuple[int, int, str, int] | None = None
    warned: set[str] = field(default_factory=set)  # the command's warnings, each shown once

    def cpus_for(self, job: Job) -> int:
        """The CPUs to reserve for a job: `--cpus`, else what it uses."""
        return self.settings.cpus or job.cpus

    @property
    def gpus(self) -> int:
        devices = self.target.devices if self.target.strategy == "ddp" else 1
        return self.settings.gpus_for(self.target.device, devices)

    def warn_once(self, text: str) -> None:
        if text not in self.warned:
            self.warned.add(text)
            self.console.print(f"[yellow]warning[/]: {text}")

    def check_cpus(self, jobs: Sequence[Job]) -> None:
        """Warn (once) where `--cpus` reserves fewer CPUs than a run uses."""
        used = max((job.cpus for job in jobs), default=1)
        if self.settings.cpus is not None and self.settings.cpus < used:
            self.warn_once(
                f"--cpus {self.settings.cpus} reserves fewer CPUs than a run uses ({used}: "
                "its target.threads on each rank); its threads stay as its config says"
            )

    def check_threads(self, threads: int, what: str) -> None:
        """Warn (once) where `what` trains with more threads at a time than this machine
        has CPUs. The threads are never lowered to fit: they are part of each run's config,
        and fewer would change its numbers."""
        available = os.cpu_count() or 1
        if threads > available:
            self.warn_once(
                f"{what}: {threads} threads on {available} CPUs, so they slow each other "
                "down; each run keeps the threads its config names (target.threads): set "
                "them lower, or run fewer at a time"
            )


class Launcher(Protocol):
    """Where jobs execute: one JobResult per run (in `runs_of(job)` order within a job), as
    each ends; the launcher prints each run's end, the runner records it."""

    def launch(self, jobs: Sequence[Job], place: Placement) -> Iterable[JobResult]: ...


def show_result(bar: Any, task: Any, job: RunJob, result: JobResult) -> None:
    """A run's end on the progress display: its last metrics, or why it failed."""
    from expc.runtime.worker import summary

    if result.error:
        bar.console.print(f"[bold red]{job.name}: failed[/]: {result.error}")
    else:
        bar.update(task, completed=job.steps)
        bar.console.print(f"[bold]{job.name}[/]: {summary(result.final)}")


def settings_for(block: ir.Node | None, flags: dict[str, Any]) -> LaunchSettings:
    """The spec's `launch KIND { ... }` block (ir.LaunchRay, ...), the flags on top."""
    settings = LaunchSettings()
    if block is not None:
        values = block.model_dump(exclude={"span", "field_spans"})
        values["launcher"] = values.pop("kind")
        values["cluster"] = values.pop("executor", None)
        values["setup"] = tuple(values.get("setup") or ())
        settings = settings.updated(**values)
    return settings.updated(**flags)


def dry_run_here(jobs: Sequence[Job], place: Placement) -> Iterable[JobResult]:
    """What a local launcher's `--dry-run` prints: the runs it would train; no result."""
    from expc.runtime.worker import runs_of

    names = [run.name for job in jobs for run in runs_of(job)]
    place.console.print(f"# would train {len(names)} runs here: " + ", ".join(names))
    return iter(())


def note_local_cpus(place: Placement) -> None:
    """`--cpus` on this machine: it reserves nothing here, and never sets a run's threads."""
    if place.settings.cpus is not None:
        place.warn_once(
            f"--cpus {place.settings.cpus} reserves CPUs for Ray and SLURM; here each run "
            "trains with its target.threads (`--set target.threads=N` changes them)"
        )
