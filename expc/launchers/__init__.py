"""Where a spec's runs execute: every placement is a launcher, and none changes a number.

A launcher receives the jobs the runner built (expc.runtime.worker: a `RunJob`, or an
`EnsembleJob` whose members train together) and a `Placement` (where to print, the launch
settings), and yields one `JobResult` per run as each ends; it never resolves, compiles or
reads the spec, and the runner keeps everything else (which runs are skipped or resumed,
the failures it reports, tracking, the report). Five implement it: in this process
(`in_process`), `--jobs` child processes (`processes`), torchrun for `strategy = ddp`
(`torchrun`), Ray tasks (`ray_launcher`) and a SLURM job array (`slurm_launcher`). Each
only decides where `worker.execute_job(job)` (or torchrun over it) is called: what a run
needs to train the same way, its threads and devices and seeds, is in its resolved config,
and a launcher requests the CPUs that config uses (threads x ranks) rather than choosing
the threads from what it reserved.
"""

from __future__ import annotations

from typing import Any

from expc.launchers.base import (
    Launcher,
    LaunchSettings,
    Placement,
    settings_for,
    show_result,
)

__all__ = [
    "LaunchSettings",
    "Launcher",
    "Placement",
    "choose",
    "settings_for",
    "show_result",
    "shutdown",
]


def choose(settings: LaunchSettings, target: Any, jobs: int, units: int) -> Launcher:
    """The launcher for these settings: Ray or SLURM when named; locally, torchrun for a DDP
    spec, `--jobs` child processes for more than one unit of placement, else this process."""
    from expc.runtime.errors import RunError

    if settings.launcher != "local" and jobs > 1:
        raise RunError(
            f"--jobs runs local processes; with the {settings.launcher} launcher, each run is "
            "placed by it (set CPUs per run with --cpus)"
        )
    if settings.launcher == "ray":
        from expc.launchers.ray_launcher import RayLauncher

        return RayLauncher()
    if settings.launcher == "slurm":
        from expc.launchers.slurm_launcher import SlurmLauncher

        return SlurmLauncher()
    if target.strategy == "ddp":
        from expc.launchers.torchrun import TorchrunLauncher

        return TorchrunLauncher()
    if jobs > 1 and units > 1:
        from expc.launchers.processes import ProcessesLauncher

        return ProcessesLauncher(jobs)
    from expc.launchers.in_process import InProcessLauncher

    return InProcessLauncher()


def shutdown() -> None:
    """At the end of a command: stop what the launchers started (a local Ray)."""
    import sys

    if "expc.launchers.ray_launcher" in sys.modules:
        sys.modules["expc.launchers.ray_launcher"].shutdown()
