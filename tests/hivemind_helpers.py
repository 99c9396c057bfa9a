"""Shared by the hivemind tests: a tiny trained LM, and `expc serve` in a subprocess."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import ROOT, experiment_dir

MODEL = "gated_attention/gated"
# The smoke profile, made smaller still: one layer of width 32, two steps.
TINY = [
    "train.steps=2",
    "train.eval_every=2",
    "train.eval_batches=1",
    "train.batch_size=2",
    "model.layers=1",
    "model.width=32",
]


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """runs/gated_attention@smoke+set-.../gated of a real (tiny) `expc run`: checkpoint.pt,
    config.json, and the experiment folder's spec.json."""
    out = tmp_path_factory.mktemp("hivemind_runs")
    sets = [arg for item in TINY for arg in ("--set", item)]
    command = ["run", "specs/gated_attention.exp", "--smoke", "--variant", "gated", *sets]
    result = subprocess.run(
        [sys.executable, "-m", "expc", *command, "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    return experiment_dir(out, "gated_attention", "smoke", TINY) / "gated"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """`expc serve RUN_DIR` on a free loopback port; its request log goes to `log`."""

    def __init__(
        self, run_dir: Path, log: Path, max_context: int = 64, extra: tuple[str, ...] = ()
    ) -> None:
        self.port = free_port()
        self.log = log
        self.url = f"http://127.0.0.1:{self.port}/v1"
        args = ["serve", str(run_dir), "--port", str(self.port), "--threads", "1"]
        with open(log, "w") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "expc", *args, "--max-context", str(max_context), *extra],
                cwd=ROOT,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"expc serve exited:\n{self.log.read_text()}")
            try:
                if httpx.get(self.url + "/models", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise AssertionError(f"expc serve did not come up:\n{self.log.read_text()}")

    def posts(self, path: str) -> int:
        """Requests to path answered 200, from uvicorn's access log."""
        return self.log.read_text().count(f'"POST /v1{path} HTTP/1.1" 200')

    def kill(self) -> None:
        """SIGKILL: the server dies mid-run, no graceful shutdown."""
        self.process.kill()
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
