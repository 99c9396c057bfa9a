"""One `expc run` command's shared state: its folders, console and flags, and what it has
built or refused so far (the upstream runs of other specs it trains first)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console


@dataclass
class Session:
    """What one `expc run` command shares with the upstream runs it builds first."""

    out_dir: Path
    generated: Path | None  # None: generated/ for specs under specs/, else the run folder
    console: Console
    device: str | None = None
    resume: bool = False
    force: bool = False
    jobs: int = 1
    nodes: tuple[int, int, str, int] | None = None
    # The command line's launcher settings (`--launcher`, `--address`, ...): over the spec's
    # `launch` block, for this spec and the upstream ones it builds.
    launch_flags: dict[str, Any] = field(default_factory=dict)
    track: str | None = None  # a tracking URI (`--track`), beside the spec's `tracking` block
    # Trackers opened in this command (uri -> tracker), and the problems already shown.
    trackers: dict[str, Any] = field(default_factory=dict)
    tracking_problems: set[str] = field(default_factory=set)
    sync_every_s: float = 10.0
    seeds: str | None = None  # --seeds: "3" or "[0, 1, 2]", for the spec run (not upstream)
    # Upstream runs built (or found up to date) in this command: (spec path, profile, run)
    # -> the record config.json keeps, or the reason it is not available.
    built: dict[tuple[str, str | None, str], dict[str, str] | str] = field(default_factory=dict)
    # Runs that failed or were refused in this command: (spec path, profile, run) -> why.
    unavailable: dict[tuple[str, str | None, str], str] = field(default_factory=dict)
    # (upstream spec path, the dependent's profile) -> the profile the upstream runs under.
    profiles: dict[tuple[str, str | None], str | None] = field(default_factory=dict)
    warned: set[str] = field(default_factory=set)  # the launchers' warnings, each shown once
