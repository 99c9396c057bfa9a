"""Run folders against unlucky and hostile users: a second writer, planted symlinks, corrupt
and crafted checkpoints. Each fault stops only its own run, with a message naming it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from expc.runtime import RunError, load_checkpoint
from tests.conftest import MINIMAL

TWO_RUNS = MINIMAL + "target cpu {}\nvariant a {}\nvariant b { train.lr = 2e-3 }\n"


def _expc(*args: object, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "expc", *map(str, args)], cwd=cwd, capture_output=True, text=True
    )


def _spec(tmp_path: Path, text: str = TWO_RUNS) -> Path:
    path = tmp_path / "s.exp"
    path.write_text(text)
    return path


class _Payload:
    """Unpickling this runs a shell command: what a crafted checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        import os

        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_checkpoint_is_refused_before_it_runs_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": {}, "payload": _Payload(marker)}, path)
    with pytest.raises(RunError, match="is not an expc checkpoint, and was not loaded"):
        load_checkpoint(path)
    assert not marker.exists()


_DIFFUSION_BASE = Path(__file__).resolve().parent.parent / "specs/diffusion_memorization.exp"


def _diffusion_base(tmp_path: Path) -> str:
    """A copy of the diffusion spec beside the test's spec: what a spec extends lies inside
    its project root (here its own folder)."""
    shutil.copy(_DIFFUSION_BASE, tmp_path / "diffusion_memorization.exp")
    return "diffusion_memorization.exp"


def _diffusion_two_runs(tmp_path: Path) -> str:
    base = _diffusion_base(tmp_path)
    return (
        f'extends "{base}"\nexperiment tiny {{}}\nremove sweep\ndata.n = 16\n'
        "train { steps = 6  stop_memorized = 0 }\n"
        "eval { evaluations = 2  first_eval = 3  samples = 8  sampling_steps = 2 }\n"
        "variant a {}\nvariant b { train.lr = 1e-3 }\n"
    )


@pytest.mark.parametrize("objective", ["next_token", "diffusion"])
def test_a_corrupt_checkpoint_stops_its_run_and_the_others_go_on(
    tmp_path: Path, objective: str
) -> None:
    text = TWO_RUNS if objective == "next_token" else _diffusion_two_runs(tmp_path)
    spec = _spec(tmp_path, text)
    out = tmp_path / "runs"
    first = _expc("run", spec, "--out", out, cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    run_a = out / "tiny/a"
    data = (run_a / "checkpoint.pt").read_bytes()
    (run_a / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    for name in ("a", "b"):
        (out / "tiny" / name / "summary.json").unlink()
    (out / "tiny/report.md").unlink()
    result = _expc("run", spec, "--out", out, "--resume", cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 1
    assert f"{run_a / 'checkpoint.pt'} is corrupt or truncated" in output
    assert "Traceback" not in output
    assert (out / "tiny/b/summary.json").exists()  # the other run resumed and finished
    assert (out / "tiny/report.md").exists()


def test_a_crafted_checkpoint_in_a_run_folder_fails_that_run_only(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    out = tmp_path / "runs"
    assert _expc("run", spec, "--out", out, cwd=tmp_path).returncode == 0
    marker = tmp_path / "pwned"
    torch.save({"model": {}, "payload": _Payload(marker)}, out / "tiny/a/checkpoint.pt")
    (out / "tiny/a/summary.json").unlink()
    result = _expc("run", spec, "--out", out, "--resume", cwd=tmp_path)
    assert result.returncode == 1
    assert "is not an expc checkpoint" in result.stdout + result.stderr
    assert not marker.exists()


def test_a_second_writer_of_a_run_folder_stops_at_once_naming_the_holder(tmp_path: Path) -> None:
    slow = MINIMAL.replace("steps = 2", "steps = 400") + "target cpu {}\n"
    spec = _spec(tmp_path, slow)
    out = tmp_path / "runs"
    first = subprocess.Popen(
        [sys.executable, "-m", "expc", "run", str(spec), "--out", str(out)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 60
        while not (out / "tiny/main/metrics.jsonl").exists() and time.time() < deadline:
            time.sleep(0.2)
        assert first.poll() is None, "the first run ended before the second started"
        # Paused mid-run, the first cannot finish while the second starts (on a loaded
        # machine a second Python start can take longer than the first's 400 steps).
        os.kill(first.pid, signal.SIGSTOP)
        try:
            second = _expc("run", spec, "--out", out, cwd=tmp_path)
        finally:
            os.kill(first.pid, signal.SIGCONT)
        output = second.stdout + second.stderr
        assert second.returncode == 1
        assert f"is being written by another expc run (pid {first.pid})" in output
    finally:
        first.wait(timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    rows = (out / "tiny/main/metrics.jsonl").read_text().splitlines()
    assert [int(r.split('"step": ')[1].split(",")[0]) for r in rows] == list(range(1, 401))


@pytest.mark.parametrize("planted", ["metrics.jsonl", "checkpoint.pt.tmp"])
def test_a_symlink_planted_in_a_run_folder_is_refused(tmp_path: Path, planted: str) -> None:
    spec = _spec(tmp_path)
    out = tmp_path / "runs"
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (out / "tiny/a").mkdir(parents=True)
    (out / "tiny/a" / planted).symlink_to(victim)
    result = _expc("run", spec, "--out", out, cwd=tmp_path)
    assert result.returncode == 1
    assert "is a symlink; refusing to write through it" in result.stdout + result.stderr
    assert victim.read_text() == "precious\n"
    assert (out / "tiny/b/summary.json").exists()


def test_temp_files_of_a_killed_run_are_removed_on_the_next_start(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    out = tmp_path / "runs"
    (out / "tiny/a").mkdir(parents=True)
    (out / "tiny/a/checkpoint.pt.tmp").write_bytes(b"torn")
    assert _expc("run", spec, "--out", out, cwd=tmp_path).returncode == 0
    assert not (out / "tiny/a/checkpoint.pt.tmp").exists()


def test_diffusion_stopped_on_memorization_does_not_train_on_when_resumed(tmp_path: Path) -> None:
    """Killed between the stopping checkpoint and summary.json, `--resume` adds nothing."""
    spec = tmp_path / "mem.exp"
    spec.write_text(
        f'extends "{_diffusion_base(tmp_path)}"\n'
        "experiment mem_stop {}\nremove sweep\n"
        "data.n = 16\n"
        "train { steps = 40  stop_memorized = 0.5 }\n"
        # Nearly every sample counts as a copy: the run stops at its first evaluation.
        "eval { evaluations = 4  first_eval = 5  samples = 16  sampling_steps = 2\n"
        "  gap_threshold = 0.999 }\n"
    )
    out = tmp_path / "runs"
    first = _expc("run", spec, "--out", out, cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    run_dir = out / "mem_stop/main"
    rows = (run_dir / "metrics.jsonl").read_text()
    steps = [int(line.split('"step": ')[1].split(",")[0]) for line in rows.splitlines()]
    assert steps[-1] < 40  # it stopped early
    (run_dir / "summary.json").unlink()
    again = _expc("run", spec, "--out", out, "--resume", cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert (run_dir / "metrics.jsonl").read_text() == rows
    assert (run_dir / "summary.json").exists()


def test_a_write_that_fails_names_the_run_and_path_and_leaves_no_temp_file(
    tmp_path: Path,
) -> None:
    """A file-size limit stands in for a full disk: the same failed write, without filling
    this machine's disk. The small run finishes, the large one fails alone."""
    import resource

    spec = _spec(tmp_path, TWO_RUNS.replace("variant b {", "variant b { model.width = 256 "))
    out = tmp_path / "runs"

    def limit_file_size() -> None:  # 1.5 MB: run a's checkpoint fits, run b's does not
        resource.setrlimit(resource.RLIMIT_FSIZE, (1_500_000, 1_500_000))

    result = subprocess.run(
        [sys.executable, "-m", "expc", "run", str(spec), "--out", str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        preexec_fn=limit_file_size,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1
    assert f"run b could not write: {out / 'tiny/b/checkpoint.pt.tmp'}" in output
    assert "Traceback" not in output
    assert not (out / "tiny/b/checkpoint.pt.tmp").exists()
    assert (out / "tiny/a/summary.json").exists() and (out / "tiny/report.md").exists()


@pytest.mark.parametrize("damage", ["corrupt_middle_line", "emptied", "deleted", "row_removed"])
def test_a_finished_run_whose_metrics_do_not_verify_is_trained_again(
    tmp_path: Path, damage: str
) -> None:
    from tests.conftest import run_cli

    spec = _spec(tmp_path, MINIMAL.replace("steps = 2", "steps = 4") + "target cpu {}\n")
    out = tmp_path / "runs"
    assert _expc("run", spec, "--out", out, cwd=tmp_path).returncode == 0
    metrics = out / "tiny/main/metrics.jsonl"
    rows = metrics.read_text()
    lines = rows.splitlines(keepends=True)
    if damage == "corrupt_middle_line":
        metrics.write_text("".join([lines[0], '{"step": 2, "train_lo\n', *lines[2:]]))
    elif damage == "emptied":
        metrics.write_text("")
    elif damage == "deleted":
        metrics.unlink()
    else:
        metrics.write_text("".join([lines[0], *lines[2:]]))
    listed = run_cli("runs", out)
    assert "damaged" in listed.output or damage == "deleted"  # a deleted file lists no run
    again = _expc("run", spec, "--out", out, cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "its files do not verify" in again.stdout
    assert metrics.read_text().count("\n") == rows.count("\n") == 4
    assert "finished" in run_cli("runs", out).output


def test_resume_refuses_a_metrics_file_with_a_hole(tmp_path: Path) -> None:
    spec = _spec(tmp_path, MINIMAL.replace("steps = 2", "steps = 4") + "target cpu {}\n")
    out = tmp_path / "runs"
    assert _expc("run", spec, "--out", out, cwd=tmp_path).returncode == 0
    run_dir = out / "tiny/main"
    (run_dir / "summary.json").unlink()
    lines = (run_dir / "metrics.jsonl").read_text().splitlines(keepends=True)
    (run_dir / "metrics.jsonl").write_text("".join([lines[0], "garbage\n", *lines[2:]]))
    refused = _expc("run", spec, "--out", out, "--resume", cwd=tmp_path)
    assert refused.returncode == 1
    assert "cannot resume: metrics.jsonl line 2 is corrupt" in refused.stdout
    (run_dir / "metrics.jsonl").unlink()
    refused = _expc("run", spec, "--out", out, "--resume", cwd=tmp_path)
    assert "metrics.jsonl is missing while checkpoint.pt is there" in refused.stdout
