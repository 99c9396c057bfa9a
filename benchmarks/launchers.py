"""Wall time of one 8-run sweep under each launcher on this machine: serial (one process),
`--jobs 2` (a process per run, two at a time) and `--launcher ray` (a local Ray with one
worker per core, started and stopped by the command), interleaved, medians of REPEATS.

Prints the medians, their ratios to serial, and what each launcher costs beyond the runs'
own training seconds (the `elapsed_s` of each run's last metrics row), per run:
(wall x runs at a time - own seconds) / runs. Where that goes is measured beside it: an
`expc run` that trains nothing (every run finished: Python, torch, the spec), which serial
pays once and `--jobs` once per run; and Ray's own costs, its start, a worker's first task
(importing torch and expc) and a task on a warm worker. Every sweep starts from an empty
runs folder, so nothing is skipped. Run from the repository root:

    .venv/bin/python benchmarks/launchers.py [--set train.steps=150] [--repeats 3]
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


def sweep(flags: list[str], sets: list[str], out: str, generated: Path) -> float:
    command = [sys.executable, "-m", "expc", "run", SPEC, "--smoke", "--out", out]
    command += ["--generated", str(generated), *flags]
    for item in sets:
        command += ["--set", item]
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - started


def own_seconds(out: str) -> float:
    total = 0.0
    for metrics in Path(out).glob("*/*/metrics.jsonl"):
        rows = [json.loads(line) for line in metrics.read_text().splitlines()]
        total += rows[-1]["elapsed_s"]
    return total


def ray_costs() -> tuple[float, float, float, float]:
    """(start a local Ray, a fresh worker's first task, a task on a warm worker, stop it)
    seconds."""
    import ray

    started = time.perf_counter()
    ray.init(num_cpus=SLOTS, include_dashboard=False, log_to_driver=False)
    start = time.perf_counter() - started

    @ray.remote(num_cpus=1)
    def task() -> int:
        import torch  # noqa: F401 - what a run's task imports

        import expc.runtime.worker  # noqa: F401

        return os.getpid()

    started = time.perf_counter()
    ray.get(task.remote())
    first = time.perf_counter() - started
    warm = []
    for _ in range(20):
        started = time.perf_counter()
        ray.get(task.remote())
        warm.append(time.perf_counter() - started)
    started = time.perf_counter()
    ray.shutdown()
    return start, first, statistics.median(warm), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--set", action="append", default=[], dest="sets")
    parser.add_argument("--repeats", type=int, default=REPEATS)
    args = parser.parse_args()
    walls: dict[str, list[float]] = {name: [] for name in LAUNCHERS}
    extra: dict[str, list[float]] = {name: [] for name in LAUNCHERS}
    idle: list[float] = []
    with tempfile.TemporaryDirectory() as scratch:
        generated = Path(scratch) / "generated"
        finished = str(Path(scratch) / "finished")
        sweep([], args.sets, finished, generated)  # compiles once; its runs stay finished
        for _ in range(args.repeats):
            for name, (flags, slots) in LAUNCHERS.items():
                with tempfile.TemporaryDirectory(dir=scratch) as out:
                    wall = sweep(flags, args.sets, out, generated)
                    walls[name].append(wall)
                    extra[name].append((wall * slots - own_seconds(out)) / 8)
            idle.append(sweep([], args.sets, finished, generated))
    start, first, warm, stop = ray_costs()
    serial = statistics.median(walls["serial"])
    print(f"{SPEC} --smoke {' '.join('--set ' + s for s in args.sets)}".rstrip())
    print(f"{SLOTS} cores, medians of {args.repeats} interleaved repeats")
    print(f"{'launcher':<8} {'wall s':>8} {'/serial':>8} {'beyond training, s/run':>23}")
    for name in LAUNCHERS:
        wall = statistics.median(walls[name])
        print(f"{name:<8} {wall:8.2f} {wall / serial:8.2f} {statistics.median(extra[name]):23.2f}")
    print(f"an `expc run` that trains nothing: {statistics.median(idle):.2f} s")
    print(
        f"Ray: start {start:.2f} s, a worker's first task {first:.2f} s, "
        f"a warm task {warm * 1e3:.1f} ms, stop {stop:.2f} s"
    )


if __name__ == "__main__":
    main()
