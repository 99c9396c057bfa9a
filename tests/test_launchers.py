"""Runs placed by a launcher: Ray tasks (a local Ray the command starts and stops), and a
SLURM job array through submitit (its local executor, and a fake sbatch that refuses).
Each launcher must leave exactly the run folders the local runner writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT

from expc.runtime import read_metrics

pytest.importorskip("ray")
pytest.importorskip("submitit")

# Eight quick runs; `target.threads` pinned, so every launcher gives each run one thread
# (reductions over a batch are bit-identical only at the same thread count).
SWEEP = """\
experiment launch_demo {}
objective next_token {}
data text { context = 16 }
model transformer { layers = 1 width = 16 heads = 2 }
train { steps = 12 batch_size = 4 eval_every = 4 eval_batches = 1 }
target { threads = 1 }
sweep grid { model.layers = [1, 2] train.lr = [1e-3, 3e-3] data.context = [8, 16] }
"""
BROKEN = "layers_2-lr_0.003-context_8"  # a planted symlink makes this run fail in its worker


def expc(*args: str | Path, env: dict[str, str] | None = None, timeout: float = 300):
    return subprocess.run(
        [sys.executable, "-m", "expc", "run", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


def rows(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in read_metrics(run_dir)]


def plant_failure(experiment: Path) -> None:
    """A run whose metrics.jsonl is a symlink: its worker refuses to write through it."""
    run_dir = experiment / BROKEN
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.jsonl").symlink_to(experiment.parent / "elsewhere.jsonl")


@pytest.fixture()
def sweep(tmp_path: Path) -> Path:
    spec = tmp_path / "sweep.exp"
    spec.write_text(SWEEP)
    return spec


def test_ray_sweep_equals_the_local_sweep_and_a_failure_stops_only_its_run(
    tmp_path: Path, sweep: Path
) -> None:
    results = {}
    for launcher in ("local", "ray"):
        out = tmp_path / launcher
        plant_failure(out / "launch_demo")
        done = expc(sweep, "--out", out, "--launcher", launcher)
        output = done.stdout + done.stderr
        assert done.returncode == 1, output
        assert "Traceback" not in output
        assert f"1 of 8 runs failed: {BROKEN} (" in output
        assert "is a symlink; refusing to write through it" in output
        assert "the others finished and are in the report" in output
        results[launcher] = out / "launch_demo"
    if_ray = results["ray"]
    names = sorted(p.name for p in results["local"].iterdir() if (p / "summary.json").exists())
    assert len(names) == 7 and BROKEN not in names
    for name in names:
        assert rows(if_ray / name) == rows(results["local"] / name), name
        assert json.loads((if_ray / name / "config.json").read_text()) == json.loads(
            (results["local"] / name / "config.json").read_text()
        )
    assert f"| {BROKEN} |" not in (if_ray / "report.md").read_text()
    # Finished runs are skipped on Ray as locally; only the broken one is tried again.
    (if_ray / BROKEN / "metrics.jsonl").unlink()
    again = expc(sweep, "--out", tmp_path / "ray", "--launcher", "ray")
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("finished earlier") == 7
    assert "running 1 run on Ray" in again.stdout
    assert len(read_metrics(if_ray / BROKEN)) == 3


LONG = SWEEP.replace("steps = 12", "steps = 400").replace("eval_every = 4", "eval_every = 20")
LONG = LONG.replace(
    "sweep grid { model.layers = [1, 2] train.lr = [1e-3, 3e-3] data.context = [8, 16] }",
    "sweep grid { train.lr = [1e-3, 3e-3] }",
)


def kill_a_worker(spec: Path, out: Path, *flags: str) -> tuple[int, str, list[dict]]:
    """Run the sweep on Ray and SIGKILL the worker training `lr_0.001` once it has a
    checkpoint; the command's exit code and output, and the run's rows at the kill (each
    evaluation checkpoints, so a resume keeps them all, wall times included)."""
    victim = out / "launch_demo" / "lr_0.001"
    process = subprocess.Popen(
        [sys.executable, "-m", "expc", "run", str(spec), "--out", str(out), "--launcher", "ray",
         *flags],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        if (victim / "checkpoint.pt").exists() and len(read_metrics(victim)) >= 3:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the sweep ended before its worker could be killed"
    worker = int((victim / ".lock").read_text().split()[0])  # the process writing the run
    assert worker != process.pid
    os.kill(worker, signal.SIGKILL)
    at_kill = read_metrics(victim)
    output, _ = process.communicate(timeout=240)
    return process.returncode, output, at_kill


def kept(at_kill: list[dict], run_dir: Path) -> bool:
    """Whether the run continued from its checkpoint (the rows before it are the ones
    written before the kill, elapsed_s included) rather than starting again."""
    before = at_kill[:-1]  # the last row may be newer than the checkpoint it preceded
    return bool(before) and read_metrics(run_dir)[: len(before)] == before


def uninterrupted(spec: Path, tmp_path: Path) -> list[dict]:
    local = tmp_path / "local"
    done = expc(spec, "--out", local, "--variant", "lr_0.001")
    assert done.returncode == 0, done.stdout
    return rows(local / "launch_demo" / "lr_0.001")


def test_a_killed_ray_worker_fails_its_run_and_resume_finishes_it_exactly(tmp_path: Path) -> None:
    spec = tmp_path / "long.exp"
    spec.write_text(LONG)
    out = tmp_path / "ray"
    victim = out / "launch_demo" / "lr_0.001"
    code, output, at_kill = kill_a_worker(spec, out)
    assert code == 1, output
    assert "Traceback" not in output
    assert "lr_0.001: failed" in output and "the Ray worker running it died" in output
    assert "--resume` continues it from its last checkpoint" in output
    assert (out / "launch_demo" / "lr_0.003" / "summary.json").exists()  # the other went on
    assert not (victim / "summary.json").exists()

    resumed = expc(spec, "--out", out, "--launcher", "ray", "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "lr_0.003: finished earlier" in resumed.stdout
    assert rows(victim) == uninterrupted(spec, tmp_path)
    assert kept(at_kill, victim)


def test_retries_resume_a_run_whose_worker_died(tmp_path: Path) -> None:
    spec = tmp_path / "long.exp"
    spec.write_text(LONG)
    out = tmp_path / "ray"
    code, output, at_kill = kill_a_worker(spec, out, "--retries", "1")
    assert code == 0, output
    assert "lr_0.001: its worker died; resuming it (retry 1 of 1)" in output
    assert rows(out / "launch_demo" / "lr_0.001") == uninterrupted(spec, tmp_path)
    assert kept(at_kill, out / "launch_demo" / "lr_0.001")


def test_submitit_local_executor_runs_the_array_as_the_local_runner_would(
    tmp_path: Path, sweep: Path
) -> None:
    spec = tmp_path / "two.exp"
    spec.write_text(
        SWEEP.replace(
            "sweep grid { model.layers = [1, 2] train.lr = [1e-3, 3e-3] data.context = [8, 16] }",
            "sweep depth { model.layers = [1, 2] }",
        )
    )
    slurm = expc(spec, "--out", tmp_path / "slurm", "--launcher", "slurm", "--executor", "local")
    assert slurm.returncode == 0, slurm.stdout + slurm.stderr
    assert "submitted 2 runs to local" in slurm.stdout
    local = expc(spec, "--out", tmp_path / "local")
    assert local.returncode == 0, local.stdout
    for name in ("layers_1", "layers_2"):
        ours = tmp_path / "slurm" / "launch_demo" / name
        assert (ours / "summary.json").exists()
        assert rows(ours) == rows(tmp_path / "local" / "launch_demo" / name)
    assert (tmp_path / "slurm" / "launch_demo" / "report.md").exists()
    assert list((tmp_path / "slurm" / "launch_demo" / ".submitit").glob("*_result.pkl"))


def test_dry_run_prints_the_sbatch_script_and_submits_nothing(tmp_path: Path, sweep: Path) -> None:
    spec = tmp_path / "cluster.exp"
    spec.write_text(
        SWEEP
        + 'launch slurm { partition = "gpu" time = 90 cpus = 4 mem_gb = 16 '
        + 'setup = ["module load cuda/12.4"] }\n'
    )
    out = tmp_path / "runs"
    dry = expc(spec, "--out", out, "--dry-run", "--qos", "high", "--gpus", "1")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    for line in (
        "would submit 8 runs as one job array",
        "#SBATCH --array=0-7%8",
        "#SBATCH --partition=gpu",
        "#SBATCH --time=90",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --mem=16GB",
        "#SBATCH --gpus-per-node=1",
        "#SBATCH --qos=high",
        "module load cuda/12.4",
        "submitit.core._submit",
    ):
        assert line in dry.stdout, line
    assert not [p for p in (out / "launch_demo").iterdir() if (p / "config.json").exists()]
    # Without a cluster, submitting says so instead of failing somewhere in submitit.
    real = expc(spec, "--out", out, env={"PATH": "/usr/bin:/bin"})
    assert real.returncode == 1
    assert "cannot submit to slurm" in real.stdout + real.stderr
    assert "--dry-run" in real.stdout + real.stderr


def test_a_refused_submission_is_a_clear_error(tmp_path: Path, sweep: Path) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "srun").write_text("#!/bin/sh\nexit 0\n")
    (fake / "sbatch").write_text(
        "#!/bin/sh\necho 'sbatch: error: invalid partition specified: nope' >&2\nexit 1\n"
    )
    for tool in fake.iterdir():
        tool.chmod(0o755)
    path = f"{fake}:{os.environ['PATH']}"
    done = expc(sweep, "--out", tmp_path / "runs", "--launcher", "slurm", "--partition", "nope",
                env={"PATH": path})  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 1
    assert "Traceback" not in output
    assert "the job array was refused: sbatch: error: invalid partition specified: nope" in output
    assert "no run was submitted" in output


def test_an_unreachable_ray_address_is_a_clear_error(tmp_path: Path, sweep: Path) -> None:
    started = time.monotonic()
    done = expc(sweep, "--out", tmp_path / "runs", "--launcher", "ray", "--address", "127.0.0.1:9")
    output = done.stdout + done.stderr
    assert done.returncode == 1
    assert "could not reach a Ray cluster at 127.0.0.1:9" in output
    assert "no run was started" in output and "Traceback" not in output
    assert time.monotonic() - started < 60
    bad = expc(sweep, "--out", tmp_path / "runs", "--launcher", "ray", "--address", "nohost")
    assert "is not HOST:PORT" in bad.stdout + bad.stderr


def test_launch_blocks_merge_replace_and_remove_through_extends(tmp_path: Path) -> None:
    from expc.compiler.pipeline import resolve
    from expc.compiler.source import SourceFile

    base = tmp_path / "base.exp"
    base.write_text(SWEEP + 'launch slurm { partition = "a" time = 30 }\n')

    def launch_of(text: str):  # noqa: ANN202
        child = tmp_path / "child.exp"
        child.write_text('extends "base.exp"\n' + text)
        spec, _ = resolve(SourceFile.read(child))
        return spec.launch

    merged = launch_of("launch slurm { time = 90 }\n")
    assert (merged.kind, merged.partition, merged.time) == ("slurm", "a", 90)
    replaced = launch_of('launch ray { address = "127.0.0.1:6379" }\n')
    assert replaced.kind == "ray" and replaced.address == "127.0.0.1:6379"
    assert launch_of("remove launch\n") is None
    # Neither block is part of a run: the runs' configs are the same with or without it.
    with_block, _ = resolve(SourceFile.read(base))
    without, _ = resolve(SourceFile("plain.exp", SWEEP))
    assert [r.config.model_dump() for r in with_block.runs] == [
        r.config.model_dump() for r in without.runs
    ]


# Seeds as ensembles (`target { ensemble = auto }`): each depth's 3 seeds train together.
ENSEMBLES = """\
experiment launch_ensembles { seeds = 3 }
objective next_token {}
data text { context = 8 }
model transformer { layers = 1 width = 16 heads = 2 }
train { steps = 8 batch_size = 4 eval_every = 4 eval_batches = 1 }
target { threads = 1 ensemble = auto }
sweep depth { model.layers = [1, 2] }
"""


def test_ensembles_are_placed_whole_by_every_launcher(tmp_path: Path) -> None:
    """An ensemble is one unit of placement: one `--jobs` child, one Ray task, one array
    job; its members' folders are those the in-process ensemble writes."""
    spec = tmp_path / "ensembles.exp"
    spec.write_text(ENSEMBLES)
    placements = {
        "local": (),
        "jobs": ("--jobs", "2"),
        "ray": ("--launcher", "ray"),
        "slurm": ("--launcher", "slurm", "--executor", "local"),
    }
    outputs = {}
    for placement, flags in placements.items():
        done = expc(spec, "--out", tmp_path / placement, *flags)
        outputs[placement] = done.stdout + done.stderr
        assert done.returncode == 0, outputs[placement]
        assert "Traceback" not in outputs[placement]
    assert outputs["local"].count("ensemble of 3 runs") == 2
    assert "running 2 runs and ensembles, 2 at a time" in outputs["jobs"]
    assert "running 6 runs as 2 tasks on Ray" in outputs["ray"]
    assert "submitted 6 runs as 2 jobs to local" in outputs["slurm"]
    local = tmp_path / "local" / "launch_ensembles"
    names = sorted(p.name for p in local.iterdir() if (p / "summary.json").exists())
    assert len(names) == 6
    for placement in ("jobs", "ray", "slurm"):
        placed = tmp_path / placement / "launch_ensembles"
        for name in names:
            assert rows(placed / name) == rows(local / name), (placement, name)
        assert (placed / "report.md").exists()
    # Finished members are skipped; a lost one trains alone, whichever launcher runs it (a
    # standalone run is its ensemble member up to float rounding: vmap sums in another order).
    (tmp_path / "ray" / "launch_ensembles" / names[0] / "metrics.jsonl").unlink()
    again = expc(spec, "--out", tmp_path / "ray", "--launcher", "ray")
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("finished earlier") == 5
    assert "running 1 run on Ray" in again.stdout
    alone = rows(tmp_path / "ray" / "launch_ensembles" / names[0])
    assert alone == [pytest.approx(row, rel=1e-5) for row in rows(local / names[0])]


def test_a_member_refused_under_jobs_fails_alone_and_the_others_go_on(
    tmp_path: Path,
) -> None:
    """One member's folder cannot be written (a symlinked metrics.jsonl): that member
    fails with the reason, its ensemble's other members and the other ensemble finish."""
    spec = tmp_path / "ensembles.exp"
    spec.write_text(ENSEMBLES)
    experiment = tmp_path / "jobs" / "launch_ensembles"
    broken = experiment / "layers_2-seed_1"
    broken.mkdir(parents=True)
    (broken / "metrics.jsonl").symlink_to(tmp_path / "elsewhere.jsonl")
    done = expc(spec, "--out", tmp_path / "jobs", "--jobs", "2")
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "Traceback" not in output
    assert "1 of 6 runs failed: layers_2-seed_1 (" in output and "the others finished" in output
    # A --jobs child's output is in its first member's job.log: the refused member's reason.
    log = (experiment / "layers_2-seed_0" / "job.log").read_text()
    assert "is a symlink; refusing to write through it" in log
    for name in ("layers_1-seed_0", "layers_1-seed_1", "layers_1-seed_2"):
        assert (experiment / name / "summary.json").exists(), name
    for name in ("layers_2-seed_0", "layers_2-seed_2"):
        assert (experiment / name / "summary.json").exists(), name
    assert not (broken / "summary.json").exists()
    assert not (tmp_path / "elsewhere.jsonl").exists()  # nothing written through the link
