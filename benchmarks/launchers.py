"""Wall time of one 8-run sweep under each launcher on this machine: serial (one process),
`--jobs 2` (a process per run, two at a time) and `--launcher ray` (a local Ray with one
worker per core, started and stopped by the command), interleaved, medians of REPEATS.

Prints the medians and their ratios to serial, and splits each launcher's cost beyond the
runs' own training seconds (the `elapsed_s` of each run's last metrics row) into a fixed
part (start-up, once per command) and a part per run, from the same sweep with 4 runs (the
`vanilla` variant) and with all 8: per run = ((wall8 - wall4) x runs at a time - (own8 -
own4)) / 4. Every command starts from an empty runs folder, so nothing is skipped. Run from
the repository root:

    .venv/bin/python benchmarks/launchers.py [--set train.steps=120 ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = "specs/diffusion_dit_memorization.exp"  # 8 runs (2 variants x 4 sample counts)
REPEATS = 3
SLOTS = os.cpu_count() or 1
LAUNCHERS = {
    "serial": ([], 1),
    "jobs 2": (["--jobs", "2"], 2),
    "ray": (["--launcher", "ray"], SLOTS),
}


def timed(flags: list[str], sets: list[str], scratch: Path) -> tuple[float, float, int]:
    """(wall seconds, the runs' own training seconds, runs) of one sweep from nothing."""
    with tempfile.TemporaryDirectory(dir=scratch) as out:
        command = [sys.executable, "-m", "expc", "run", SPEC, "--smoke", "--out", out]
        command += ["--generated", str(scratch / "generated"), *flags]
        for item in sets:
            command += ["--set", item]
        started = time.perf_counter()
        subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
        wall = time.perf_counter() - started
        own = []
        for metrics in Path(out).glob("*/*/metrics.jsonl"):
            rows = [json.loads(line) for line in metrics.read_text().splitlines()]
            own.append(rows[-1]["elapsed_s"])
        return wall, sum(own), len(own)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--set", action="append", default=[], dest="sets")
    parser.add_argument("--repeats", type=int, default=REPEATS)
    args = parser.parse_args()
    walls: dict[str, list[float]] = {name: [] for name in LAUNCHERS}
    per_run: dict[str, list[float]] = {name: [] for name in LAUNCHERS}
    fixed: dict[str, list[float]] = {name: [] for name in LAUNCHERS}
    with tempfile.TemporaryDirectory() as scratch:
        timed([], args.sets, Path(scratch))  # compile once, warm the disk cache
        for _ in range(args.repeats):
            for name, (flags, slots) in LAUNCHERS.items():
                wall8, own8, runs8 = timed(flags, args.sets, Path(scratch))
                wall4, own4, runs4 = timed(
                    [*flags, "--variant", "vanilla"], args.sets, Path(scratch)
                )
                assert (runs8, runs4) == (8, 4)
                each = ((wall8 - wall4) * slots - (own8 - own4)) / 4
                walls[name].append(wall8)
                per_run[name].append(each)
                fixed[name].append(wall8 - (own8 + 8 * each) / slots)
    serial = statistics.median(walls["serial"])
    print(f"{SPEC} --smoke {' '.join('--set ' + s for s in args.sets)}".rstrip())
    print(f"{os.cpu_count()} cores, medians of {args.repeats} interleaved repeats")
    print(f"{'launcher':<8} {'wall s':>8} {'/serial':>8} {'fixed s':>8} {'per run s':>10}")
    for name in LAUNCHERS:
        wall = statistics.median(walls[name])
        print(
            f"{name:<8} {wall:8.2f} {wall / serial:8.2f} {statistics.median(fixed[name]):8.2f}"
            f" {statistics.median(per_run[name]):10.2f}"
        )


if __name__ == "__main__":
    main()
