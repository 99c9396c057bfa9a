"""Where a sweep's runs execute, beyond the local runner: a Ray cluster (`ray_launcher`) or
SLURM through submitit (`slurm_launcher`).

Every launcher takes the same jobs (expc.runtime.worker: a `RunJob`, or an `EnsembleJob`
whose members train together) the local runner trains and hands back one `JobResult` per
run; the runner keeps everything else (which runs are skipped or resumed, the failures it
reports, the report). A launcher only decides where `worker.execute_job(job)` is called,
so it never changes a run's numbers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from rich.console import Console

    from expc.compiler import ir
    from expc.runtime.worker import Job, JobResult, RunJob

LauncherKind = Literal["local", "ray", "slurm"]


@dataclass(frozen=True)
class LaunchSettings:
    """The spec's `launch` block with the command line's flags on top (flags win)."""

    launcher: LauncherKind = "local"
    cpus: int | None = None  # per run; Ray: num_cpus, SLURM: cpus_per_task
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


def launch(
    jobs: list[Job],
    settings: LaunchSettings,
    target: Any,
    experiment_dir: Path,
    console: Console,
) -> Iterator[JobResult]:
    """The jobs' results, as each arrives, from the launcher the settings name (Ray or
    SLURM); `target` is the spec's target block (devices, strategy)."""
    devices = target.devices if target.strategy == "ddp" else 1
    gpus = settings.gpus_for(target.device, devices)
    # A run uses the CPUs reserved for it: torch threads = CPUs (a DDP run splits them).
    settings = settings.updated(cpus=settings.cpus or devices)
    from expc.runtime.worker import with_threads

    jobs = [with_threads(job, settings.cpus) for job in jobs]
    if settings.launcher == "ray":
        from expc.launchers import ray_launcher

        if settings.dry_run:
            console.print(
                f"# would run {len(jobs)} Ray tasks at {settings.address or 'a local Ray'}, "
                f"each with num_cpus={settings.cpus}, num_gpus={gpus}: "
                + ", ".join(job.name for job in jobs)
            )
            return iter(())
        return ray_launcher.run(jobs, settings, console, gpus=gpus)
    from expc.launchers import slurm_launcher

    return slurm_launcher.run(jobs, settings, console, experiment_dir, gpus=gpus)


def shutdown() -> None:
    """At the end of a command: stop what the launchers started (a local Ray)."""
    import sys

    if "expc.launchers.ray_launcher" in sys.modules:
        sys.modules["expc.launchers.ray_launcher"].shutdown()
