"""No launcher changes a number: a spec that leaves `target.threads` out trains the same rows
in this process, in `--jobs` child processes, as Ray tasks, as a SLURM array (submitit's
local executor) and through the standalone `python -m <package>.train`, bit for bit.

The spec's `gate_score` is a mean over a batch that torch splits across threads: on the
reference machine it differs in its last bits between 1 and 2 threads (0.500395655... vs
0.500395685... at step 2), which is what made Ray's rows differ from local ones while the
thread count followed the launcher (a local run took the machine's default, a Ray task the
CPUs it reserved). Every placement now trains with the run's own count, the fixed default
here, whatever OMP_NUM_THREADS the command inherits, and records it in config.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from expc.runtime import read_metrics
from expc.runtime.seeding import DEFAULT_THREADS

SPEC = """\
experiment launcher_equality {}
data text { context = 128 }
model transformer { layers = 2 width = 128 heads = 4 attention { gate = elementwise } }
objective next_token {}
train { steps = 4 batch_size = 4 eval_every = 2 eval_batches = 1 }
metrics = [train_loss, val_loss, first_token_attention, max_activation, gate_score]
sweep lr { train.lr = [1e-3, 3e-3] }
"""
RUNS = ("lr_0.001", "lr_0.003")
TIMING = ("elapsed_s", "cpu_s")
# Not the default: a launcher that let the environment (or the machine) choose the threads
# would train with this many.
INHERITED = {"OMP_NUM_THREADS": str(DEFAULT_THREADS + 1)}


def rows(run_dir: Path) -> list[dict]:
    return [
        {k: v for k, v in row.items() if k not in TIMING and not k.endswith("_per_s")}
        for row in read_metrics(run_dir)
    ]


def expc_run(*args: str | Path, cwd: Path = ROOT) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "expc", "run", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **INHERITED},
        timeout=300,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "Traceback" not in output
    return output


def test_every_launcher_trains_the_same_rows_at_the_recorded_thread_count(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    pytest.importorskip("submitit")
    spec = tmp_path / "equality.exp"
    spec.write_text(SPEC)
    placements = {
        "local": (),
        "jobs": ("--jobs", "2"),
        "ray": ("--launcher", "ray"),
        "slurm": ("--launcher", "slurm", "--executor", "local"),
    }
    outputs = {
        name: expc_run(spec, "--out", tmp_path / name, *flags) for name, flags in placements.items()
    }
    assert f"({DEFAULT_THREADS} thread(s) each)" in outputs["jobs"]
    assert f"{DEFAULT_THREADS} CPU(s) per run" in outputs["ray"]
    local = tmp_path / "local" / "launcher_equality"
    for name in RUNS:
        config = json.loads((local / name / "config.json").read_text())
        assert config["target"]["threads"] == DEFAULT_THREADS  # the count used, not 0
        assert len(rows(local / name)) == 2
        for placement in ("jobs", "ray", "slurm"):
            placed = tmp_path / placement / "launcher_equality" / name
            assert rows(placed) == rows(local / name), (placement, name)
            assert json.loads((placed / "config.json").read_text()) == config, placement

    # The standalone entry of the generated package resolves the threads the same way.
    code = local / "code"
    standalone = subprocess.run(
        [sys.executable, "-m", "launcher_equality.train", "--out", str(tmp_path / "alone")],
        cwd=code,
        capture_output=True,
        text=True,
        env={**os.environ, **INHERITED, "PYTHONPATH": str(code)},
        timeout=300,
    )
    assert standalone.returncode == 0, standalone.stdout + standalone.stderr
    for name in RUNS:
        alone = tmp_path / "alone" / "launcher_equality" / name
        assert json.loads((alone / "config.json").read_text())["target"]["threads"] == (
            DEFAULT_THREADS
        )
        assert rows(alone) == rows(local / name), name


def test_jobs_beyond_the_cpus_warn_once_and_keep_each_runs_threads(tmp_path: Path) -> None:
    """`--jobs 2` of runs that each ask for every CPU oversubscribes the machine: said once,
    and the runs still train (and record) the threads their config names."""
    spec = tmp_path / "two.exp"
    spec.write_text(
        SPEC.replace("steps = 4", "steps = 2").replace("eval_every = 2", "eval_every = 1")
    )
    threads = os.cpu_count() or 1
    sets = ("--set", f"target.threads={threads}")
    output = expc_run(spec, "--out", tmp_path / "runs", "--jobs", "2", *sets)
    assert output.count("warning") == 1, output
    assert f"{2 * threads} threads on {threads} CPUs" in output
    assert f"({threads} thread(s) each)" in output
    (experiment,) = (tmp_path / "runs").glob("launcher_equality@set-*")
    for name in RUNS:
        config = json.loads((experiment / name / "config.json").read_text())
        assert config["target"]["threads"] == threads


def test_a_run_trains_with_its_configs_threads_whatever_the_process_had(tmp_path: Path) -> None:
    """The worker every launcher calls sets the run's threads; 0 means the default."""
    import dataclasses

    import torch
    from conftest import compile_text, import_generated

    from expc.runtime.seeding import resolve_threads, run_threads
    from expc.runtime.worker import RunJob, execute

    assert run_threads(0) == DEFAULT_THREADS and run_threads(3) == 3
    _, train = import_generated(compile_text(SPEC).files, tmp_path / "gen")
    run = train.RUNS["lr_0.001"]
    assert run.target.threads == 0  # the spec leaves it out
    resolved = resolve_threads(run)
    assert resolved.target.threads == DEFAULT_THREADS and resolve_threads(resolved) == resolved
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(DEFAULT_THREADS + 1)
        job = RunJob(
            "lr_0.001",
            str(tmp_path / "gen" / "launcher_equality"),
            dataclasses.asdict(resolved),
            str(tmp_path / "out" / "lr_0.001"),
            steps=4,
        )
        assert execute(job).error is None
        assert torch.get_num_threads() == DEFAULT_THREADS
    finally:
        torch.set_num_threads(before)
