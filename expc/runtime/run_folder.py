"""One writer per run folder, and no writing through links planted in it.

`claim(run_dir)` takes an exclusive OS lock (`flock` on `<run_dir>/.lock`) for as long as
a run writes its folder. The operating system releases it when the process ends, however
it ends, so a crashed run never leaves a stale lock; a second `expc run` on the same run
stops at once with the holder's PID while the other runs of its sweep go on. A symlink in
place of the folder or of a file a run writes is refused (writing through it would
overwrite whatever it points at), and temp files a killed run left are removed.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from expc.runtime.errors import RunError

# Every file a run writes in its folder (checkpoint temp files included).
OWNED = (
    "config.json",
    "metrics.jsonl",
    "metrics.jsonl.tmp",
    "summary.json",
    "summary.json.tmp",
    "integrity.json",
    "integrity.json.tmp",
    "checkpoint.pt",
    "checkpoint.pt.tmp",
    "job.log",
    "launch.json",
    ".lock",
)


def _refuse_links(run_dir: Path) -> None:
    if run_dir.is_symlink():
        raise RunError(f"{run_dir} is a symlink; refusing to write a run through it")
    for name in OWNED:
        if (run_dir / name).is_symlink():
            raise RunError(
                f"{run_dir / name} is a symlink; refusing to write through it "
                "(remove it, or run into another --out folder)"
            )


@contextmanager
def claim(run_dir: Path) -> Iterator[None]:
    """Hold the run folder for this process while the body writes it."""
    run_dir = Path(run_dir)
    if run_dir.is_symlink() or run_dir.exists():
        _refuse_links(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    _refuse_links(run_dir)
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    descriptor = os.open(run_dir / ".lock", flags, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip() or "?"
            raise RunError(
                f"{run_dir} is being written by another expc run (pid {holder}); "
                "this run was not started"
            ) from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        for leftover in run_dir.glob("*.tmp"):  # torn writes of a killed run
            leftover.unlink(missing_ok=True)
        yield
    finally:
        os.close(descriptor)  # releases the lock
