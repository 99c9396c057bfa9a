"""`expc run --track` end to end against a real MLflow server on 127.0.0.1: rows sent while
runs train, a kill -9 and `--resume` (which rewrites rows after the checkpoint), and a
server that is not there, whose rows arrive with the next `expc run`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import test_tracking
from conftest import ROOT
from test_tracking import assert_exactly_once, free_port, mlflow_runs

from expc.runtime import read_metrics
from expc.runtime.tracking import CURSOR

pytest.importorskip("mlflow")

# The MLflow server on 127.0.0.1 (one per test module) and its client.
server = test_tracking.server
client = test_tracking.client

SPEC = """\
experiment tracked_demo {}
objective next_token {}
data text { context = 16 }
model transformer { layers = 1 width = 16 heads = 2 }
train { steps = STEPS batch_size = 4 eval_every = 10 eval_batches = 1 checkpoint_every = CKPT }
target { threads = 1 }
sweep lr { train.lr = [1e-3, 3e-3] }
"""


def command(spec: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "expc", "run", str(spec), "--out", str(out), *extra]


def test_a_killed_and_resumed_sweep_reaches_the_server_exactly_once(
    server: Any, client: Any, tmp_path: Path
) -> None:
    spec = tmp_path / "tracked.exp"
    port = server.uri.rsplit(":", 1)[1]
    spec.write_text(
        SPEC.replace("STEPS", "2000").replace("CKPT", "500")
        + f'tracking {{ uri = "mlflow://127.0.0.1:{port}" sync_every_s = 1 }}\n'
    )
    out = tmp_path / "runs"
    experiment = out / "tracked_demo"
    first = experiment / "lr_0.001"
    process = subprocess.Popen(
        command(spec, out),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    # Killed once the live sync has sent rows of the first run from after its checkpoint
    # (taken every 500 steps): the resume rewrites rows the server already holds.
    deadline = time.monotonic() + 180
    sent = 0
    while time.monotonic() < deadline and process.poll() is None:
        try:
            sent = json.loads((experiment / CURSOR).read_text())["lr_0.001"]["last_step"] or 0
        except (OSError, ValueError, KeyError):
            sent = 0
        if sent > 500 and sent % 500:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the sweep ended before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (first / "summary.json").exists()

    resumed = subprocess.run(
        command(spec, out, "--resume"), cwd=ROOT, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "tracking:" not in resumed.stdout
    runs = mlflow_runs(client, experiment)
    assert set(runs) == {"lr_0.001", "lr_0.003", "report"}
    for name in ("lr_0.001", "lr_0.003"):
        rows = read_metrics(experiment / name)
        assert rows[-1]["step"] == 2000
        # The rows the resume wrote again equal the first ones but for their wall time; the
        # server keeps the first, once.
        keys = sorted(set(client.get_run(runs[name].info.run_id).data.metrics) - {"elapsed_s"})
        assert_exactly_once(client, runs[name], rows, keys)
        steps = [m.step for m in client.get_metric_history(runs[name].info.run_id, "elapsed_s")]
        assert sorted(steps) == [row["step"] for row in rows]
        assert runs[name].info.status == "FINISHED"
        assert runs[name].data.params["train.steps"] == "2000"
    artifacts = {a.path for a in client.list_artifacts(runs["report"].info.run_id)}
    assert "report.md" in artifacts


def test_runs_go_on_without_the_server_and_their_rows_follow_on_the_next_run(
    server: Any, client: Any, tmp_path: Path
) -> None:
    spec = tmp_path / "offline.exp"
    spec.write_text(
        SPEC.replace("STEPS", "20").replace("CKPT", "0").replace("tracked_demo", "offline_demo")
    )
    out = tmp_path / "runs"
    nobody = f"mlflow://127.0.0.1:{free_port()}"
    started = time.monotonic()
    alone = subprocess.run(
        command(spec, out, "--track", nobody), cwd=ROOT, capture_output=True, text=True
    )
    assert alone.returncode == 0, alone.stdout + alone.stderr
    assert alone.stdout.count("did not answer (connection refused)") == 1  # said once
    assert "the metrics stay in" in alone.stdout and "Traceback" not in alone.stdout
    assert time.monotonic() - started < 120
    experiment = out / "offline_demo"
    assert all((experiment / n / "summary.json").exists() for n in ("lr_0.001", "lr_0.003"))

    # The next `expc run` (nothing left to train) sends what the first could not.
    again = subprocess.run(
        command(spec, out, "--track", server.uri), cwd=ROOT, capture_output=True, text=True
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("finished earlier") == 2
    runs = mlflow_runs(client, experiment)
    for name in ("lr_0.001", "lr_0.003"):
        assert_exactly_once(client, runs[name], read_metrics(experiment / name))
    # And once more: nothing is sent twice.
    subprocess.run(command(spec, out, "--track", server.uri), cwd=ROOT, check=True,
                   capture_output=True)  # fmt: skip
    runs = mlflow_runs(client, experiment)
    for name in ("lr_0.001", "lr_0.003"):
        assert_exactly_once(client, runs[name], read_metrics(experiment / name))
