"""Running at scale on one machine: exact resume after `kill -9`, skipping finished runs,
parallel jobs that fail independently, `expc report` and `expc runs`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import MINIMAL, ROOT, experiment_dir, run_cli

from expc.runtime import read_metrics

SETS = ["train.steps=40", "train.eval_every=5"]
COMMAND = [
    sys.executable,
    "-m",
    "expc",
    "run",
    "specs/gated_attention.exp",
    "--variant",
    "gated",
    "--smoke",
    *(arg for value in SETS for arg in ("--set", value)),
]


def gated_run(out: Path) -> Path:
    """The folder COMMAND trains its run in (the smoke profile with SETS on top)."""
    return experiment_dir(out, "gated_attention", "smoke", SETS) / "gated"


def without_time(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "elapsed_s"} for row in rows]


def run_until(out: Path, rows: int, extra: tuple[str, ...] = ()) -> None:
    """Start a run and SIGKILL it once metrics.jsonl has `rows` rows."""
    metrics = gated_run(out) / "metrics.jsonl"
    process = subprocess.Popen(
        [*COMMAND, "--out", str(out), *extra],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= rows:
            break
        time.sleep(0.02)
    assert process.poll() is None, "the run ended before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def test_resume_after_kill_reaches_identical_metrics(tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    subprocess.run([*COMMAND, "--out", str(reference)], cwd=ROOT, check=True, capture_output=True)
    expected = read_metrics(gated_run(reference))
    assert [r["step"] for r in expected] == list(range(5, 41, 5))

    interrupted = tmp_path / "interrupted"
    run_until(interrupted, rows=2)
    partial = read_metrics(gated_run(interrupted))
    assert 2 <= len(partial) < 8
    run_until(interrupted, rows=5, extra=("--resume",))  # killed a second time
    subprocess.run(
        [*COMMAND, "--out", str(interrupted), "--resume"], cwd=ROOT, check=True, capture_output=True
    )
    resumed = read_metrics(gated_run(interrupted))
    assert [r["step"] for r in resumed] == list(range(5, 41, 5))  # none missing or repeated
    assert without_time(resumed) == without_time(expected)  # bit-identical floats


def test_finished_runs_are_skipped_unless_forced(tmp_path: Path) -> None:
    spec, out = tmp_path / "tiny.exp", tmp_path / "runs"
    spec.write_text(MINIMAL)
    args = ["run", spec, "--out", out]
    first = run_cli(*args)
    assert first.exit_code == 0, first.output
    run_dir = out / "tiny" / "main"
    assert read_metrics(run_dir)[-1]["step"] == 2
    again = run_cli(*args)
    assert again.exit_code == 0, again.output
    assert "finished earlier with this config, skipped" in again.output
    # --set trains in a folder of its own and leaves the finished run alone.
    other = run_cli(*args, "--set", "train.steps=3")
    assert other.exit_code == 0, other.output
    assert "finished earlier" not in other.output
    assert (
        read_metrics(experiment_dir(out, "tiny", None, ["train.steps=3"]) / "main")[-1]["step"] == 3
    )
    assert read_metrics(run_dir)[-1]["step"] == 2
    # The same folder with another config (the spec changed): refused, the run kept.
    spec.write_text(MINIMAL.replace("steps = 2", "steps = 3"))
    changed = run_cli(*args)
    assert changed.exit_code == 1
    assert "finished earlier with another config (train.steps 2 -> 3" in changed.output
    assert "`--force` replaces it" in changed.output
    assert read_metrics(run_dir)[-1]["step"] == 2
    forced = run_cli(*args, "--force")
    assert forced.exit_code == 0, forced.output
    assert "replacing the finished run (--force): train.steps 2 -> 3" in forced.output
    assert "finished earlier" not in forced.output
    assert read_metrics(run_dir)[-1]["step"] == 3
    # --force reruns a finished run with the same config too.
    rerun = run_cli(*args, "--force")
    assert rerun.exit_code == 0, rerun.output
    assert "replacing the finished run (--force)" in rerun.output
    assert "finished earlier" not in rerun.output


@pytest.fixture()
def sweep_spec(tmp_path: Path) -> Path:
    spec = tmp_path / "sweep.exp"
    spec.write_text(
        MINIMAL.replace("experiment tiny {}", "experiment jobs_demo {}")
        + 'sweep corpus { data.corpus = ["pydoc_data.topics", "missing.txt"] }\n'
        + "sweep depth { model.layers = [1, 2] }\n"
    )
    return spec


def test_parallel_jobs_fail_independently_and_rerun_skips(tmp_path: Path, sweep_spec: Path) -> None:
    out, generated = tmp_path / "runs", tmp_path / "generated"
    command = [sys.executable, "-m", "expc", "run", str(sweep_spec), "--jobs", "2"]
    command += ["--out", str(out), "--generated", str(generated)]
    # From the spec's folder, its project root: a relative corpus is looked for there.
    first = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert first.returncode == 1
    output = first.stdout + first.stderr
    # The missing corpus fails its run up front, located in the spec; the others train.
    assert "no such file: missing.txt (data.corpus)" in output
    assert "--> sweep.exp:" in output  # named from the folder it ran in
    missing = "corpus_missing.txt (no such file: missing.txt (data.corpus))"
    assert f"1 of 4 runs failed: {missing}" in output
    assert "the others finished and are in the report" in output
    experiment = out / "jobs_demo"
    for name in ("corpus_pydoc_data.topics", "layers_1", "layers_2"):
        assert (experiment / name / "summary.json").exists(), name
    assert not (experiment / "corpus_missing.txt").exists()  # it never started
    assert "| corpus_missing.txt |" not in (experiment / "report.md").read_text()
    assert "| layers_2 |" in (experiment / "report.md").read_text()
    second = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert second.returncode == 1
    assert second.stdout.count("finished earlier") == 3
    assert f"1 of 4 runs failed: {missing}" in second.stdout + second.stderr


def test_report_and_runs_commands(tmp_path: Path) -> None:
    run_cli("run", "specs/gated_attention.exp", "--smoke", "--set", "train.steps=2",
            "--set", "train.eval_every=1", "--out", tmp_path)  # fmt: skip
    sets = ["train.steps=2", "train.eval_every=1"]
    experiment = experiment_dir(tmp_path, "gated_attention", "smoke", sets)
    (experiment / "report.md").unlink()
    (experiment / "val_loss.png").unlink()
    result = run_cli("report", experiment / "gated")  # a run folder works too
    assert result.exit_code == 0
    assert "| vanilla |" in (experiment / "report.md").read_text()
    assert (experiment / "val_loss.png").exists()
    listing = run_cli("runs", tmp_path)
    assert "gated_attention" in listing.output and "2/2" in listing.output
    assert "smoke with --set train.steps=2, --set train.eval_every=1" in listing.output
    assert "finished" in listing.output
    assert run_cli("report", tmp_path / "nope").exit_code == 1


def test_ddp_two_ranks_reach_the_parameters_of_one_rank(tmp_path: Path) -> None:
    """torchrun + gloo: 2 ranks with batch b/2 each equal 1 rank with batch b."""
    import torch

    spec = tmp_path / "ddp.exp"
    spec.write_text(
        MINIMAL.replace("experiment tiny {}", "experiment ddp_demo {}").replace(
            "train { steps = 2 batch_size = 2", "train { steps = 6 batch_size = 4"
        )
        + "target cpu { strategy = ddp devices = 2 }\n"
    )
    base = [sys.executable, "-m", "expc", "run", str(spec), "--generated", str(tmp_path / "gen")]
    two = subprocess.run([*base, "--out", str(tmp_path / "two")], cwd=ROOT, capture_output=True)
    assert two.returncode == 0, two.stdout.decode() + two.stderr.decode()
    one = subprocess.run(
        [*base, "--out", str(tmp_path / "one"), "--set", "target.devices=1"],
        cwd=ROOT,
        capture_output=True,
    )
    assert one.returncode == 0, one.stdout.decode() + one.stderr.decode()
    # The --set run has its own experiment folder.
    run_dirs = [
        tmp_path / "two" / "ddp_demo" / "main",
        experiment_dir(tmp_path / "one", "ddp_demo", None, ["target.devices=1"]) / "main",
    ]
    states = [torch.load(d / "checkpoint.pt", weights_only=False) for d in run_dirs]
    assert states[0]["run"]["target"]["devices"] == 2
    for key, value in states[0]["model"].items():
        torch.testing.assert_close(value, states[1]["model"][key], rtol=1e-5, atol=1e-6)
    rows = [read_metrics(d) for d in run_dirs]
    assert [r["step"] for r in rows[0]] == [1, 2, 3, 4, 5, 6]  # rank 0 alone logs
    for a, b in zip(rows[0], rows[1], strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)


def test_ddp_outside_torchrun_is_a_clear_error(tmp_path: Path) -> None:
    from conftest import compile_text, import_generated

    text = MINIMAL + "target cpu { strategy = ddp devices = 2 }\n"
    _, train = import_generated(compile_text(text).files, tmp_path / "gen")
    from expc.runtime import RunError

    with pytest.raises(RunError, match="runs under torchrun"):
        train.train(train.RUNS["main"], tmp_path / "out")


_RANK_THAT_EXITS = """
import atexit, os, socket, sys
from expc.runtime.distributed import exit_process, init_distributed

probe = socket.socket()
probe.bind(("127.0.0.1", 0))
os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                  MASTER_PORT=str(probe.getsockname()[1]))
probe.close()
atexit.register(lambda: print("interpreter teardown ran"))
if sys.argv[1] == "join":
    init_distributed("cpu").close()
print("trained", end="")  # unflushed: exit_process must flush it
exit_process(int(sys.argv[2]))
"""


@pytest.mark.parametrize("joins", [True, False])
def test_a_rank_that_joined_a_group_ends_without_the_interpreter_teardown(joins: bool) -> None:
    """A finished torchrun rank must not die in gloo's C++ teardown after writing its run
    (the abort CI saw once in ~25 runs): once it joined a group, `exit_process` ends it with
    its own code, its output flushed and no atexit handler run; a process that never joined
    exits as usual."""
    result = subprocess.run(
        [sys.executable, "-c", _RANK_THAT_EXITS, "join" if joins else "alone", "3"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 3, result.stderr
    assert result.stdout.startswith("trained")
    assert ("interpreter teardown ran" in result.stdout) is not joins


def test_tensorboard_event_files_mirror_metrics(tmp_path: Path) -> None:
    from conftest import compile_text, import_generated
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    text = MINIMAL + "eval { tensorboard = true }\n"
    _, train = import_generated(compile_text(text).files, tmp_path / "gen")
    out = tmp_path / "out"
    train.train(train.RUNS["main"], out)
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    val_loss = [(e.step, e.value) for e in events.Scalars("val_loss")]
    rows = read_metrics(out)
    assert [step for step, _ in val_loss] == [r["step"] for r in rows]
    assert [v for _, v in val_loss] == pytest.approx([r["val_loss"] for r in rows])
