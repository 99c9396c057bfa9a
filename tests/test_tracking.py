"""expc.runtime.tracking against a real MLflow server on 127.0.0.1 that the tests start.

Experiment folders are written here as `expc run` leaves them (config.json, metrics.jsonl,
summary.json, spec.json, report.md and a plot) rather than trained, so the file stays fast.
What is checked is what the server holds: every (metric, step) exactly once, whatever
happened on the way (a resume, a lost cursor, a dead server, a lost answer).
"""

from __future__ import annotations

import hashlib
import http.server
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from expc.runtime.errors import RunError
from expc.runtime.tracking import CURSOR, MlflowTracker, open_tracker

MLFLOW = Path(sys.executable).parent / "mlflow"
# A 1x1 PNG: the report's plots are only sent, never looked at.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """`mlflow server` on 127.0.0.1 over a sqlite file and an artifact folder, in its own
    process group (it starts worker processes), so that stopping it stops them all."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> None:
        command = [
            str(MLFLOW),
            "server",
            "--backend-store-uri",
            f"sqlite:///{self.root / 'mlflow.db'}",
            "--artifacts-destination",
            str(self.root / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]
        # No job runner (its worker processes are not needed and slow the start).
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        log = (self.root / "server.log").open("ab")
        self.process = subprocess.Popen(
            command,
            cwd=self.root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"mlflow server exited:\n{(self.root / 'server.log').read_text()}")
            try:
                with direct.open(f"{self.uri}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        self.kill()
        pytest.fail(f"mlflow server did not start in {timeout} s")

    def kill(self) -> None:
        """Stop it at once (a server dying), workers too."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=30)
        self.process = None
        # Its workers die a moment after it: the port is free again once nothing answers.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) != 0:
                    return
            time.sleep(0.1)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NO_PROXY", "127.0.0.1")  # never through a proxy, whatever is set
        patch.setenv("no_proxy", "127.0.0.1")
        running = Server(tmp_path_factory.mktemp("mlflow"))
        running.start()
        try:
            yield running
        finally:
            running.kill()


@pytest.fixture(scope="module")
def client(server: Server) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=server.uri)


# --- experiment folders as `expc run` leaves them -------------------------------------------


def config_of(name: str, width: int = 128) -> dict[str, Any]:
    return {
        "name": name,
        "seed": 1337,
        "model": {"layers": 4, "width": width, "attention_gate": "none", "rope_base": 10000.0},
        "data": {"corpus": "pydoc_data.topics", "val_fraction": 0.1},
        "train": {"steps": 60, "lr": 0.003, "grad_clip": None, "compile": False},
        "ks": [1, 2, 4],
        "notes": "x" * 7000,  # past MLflow's 6000 characters of a param
    }


FLAT = {  # config_of("vanilla") as params
    "name": "vanilla",
    "seed": "1337",
    "model.layers": "4",
    "model.width": "128",
    "model.attention_gate": "none",
    "model.rope_base": "10000.0",
    "data.corpus": "pydoc_data.topics",
    "data.val_fraction": "0.1",
    "train.steps": "60",
    "train.lr": "0.003",
    "train.grad_clip": "null",
    "train.compile": "false",
    "ks": "[1, 2, 4]",
    "notes": "x" * 5999 + "…",
}


def rows_of(steps: range | list[int], offset: float = 0.0) -> list[dict[str, Any]]:
    """Rows that depend on the step alone: a resumed run writes the same ones again."""
    rows = []
    for step in steps:
        val_loss = 5.0 - step / 30 + offset
        row = {
            "step": step,
            "tokens": step * 1024,
            "lr": 0.003 * min(1.0, step / 60),
            "train_loss": val_loss + 0.1,
            "val_loss": val_loss,
            "val_ppl": None if step == 30 else math.exp(val_loss),  # non-finite: null
            "spike": step == 40,
        }
        if step % 20 == 0:
            row["gate_score"] = 0.5 - step / 1000
        rows.append(row)
    return rows


def write_rows(run_dir: Path, rows: list[dict[str, Any]], mode: str = "w") -> None:
    with (run_dir / "metrics.jsonl").open(mode, encoding="utf-8") as file:
        file.writelines(json.dumps(row) + "\n" for row in rows)


def write_run(
    experiment: Path, name: str, rows: list[dict[str, Any]], finished: bool, width: int = 128
) -> Path:
    run_dir = experiment / name
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps(config_of(name, width), indent=2) + "\n")
    write_rows(run_dir, rows)
    (run_dir / "checkpoint.pt").write_bytes(b"weights")
    (run_dir / "integrity.json").write_text('{"rows": 0}\n')
    if finished:
        finish(run_dir)
    return run_dir


def finish(run_dir: Path) -> None:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    (run_dir / "summary.json").write_text(json.dumps(json.loads(lines[-1]), indent=2) + "\n")


def write_experiment(root: Path, name: str, runs: dict[str, tuple[list, bool]]) -> Path:
    experiment = root / name
    experiment.mkdir(parents=True)
    spec = {
        "source": "/work/specs/gated_attention.exp",
        "sha256": "0" * 64,
        "experiment": name.partition("@")[0],
        "profile": "smoke",
        "sets": [],
        "package": "/tmp/generated/gated_attention",
        "runs": list(runs),
        "report": None,
    }
    (experiment / "spec.json").write_text(json.dumps(spec, indent=2) + "\n")
    for run, (rows, finished) in runs.items():
        write_run(experiment, run, rows, finished)
    return experiment


def write_report(experiment: Path) -> None:
    (experiment / "report.md").write_text(f"# {experiment.name}\n\n![val_loss](val_loss.png)\n")
    (experiment / "val_loss.png").write_bytes(PNG)


def truncate(run_dir: Path, step: int) -> None:
    """What a resume from a checkpoint at `step` does to metrics.jsonl."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    write_rows(run_dir, [row for row in rows if row["step"] <= step])
    (run_dir / "summary.json").unlink(missing_ok=True)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# --- what the server holds ------------------------------------------------------------------


def expected_points(rows: list[dict[str, Any]]) -> dict[tuple[str, int], float]:
    return {
        (key, row["step"]): float(value)
        for row in rows
        for key, value in row.items()
        if key != "step" and value is not None
    }


def mlflow_runs(client: Any, experiment: Path) -> dict[str, Any]:
    """The experiment's MLflow runs by name; each name once."""
    found = client.get_experiment_by_name(experiment.name)
    assert found is not None, f"no MLflow experiment {experiment.name!r}"
    runs = client.search_runs([found.experiment_id], max_results=1000)
    names = Counter(run.info.run_name for run in runs)
    assert all(count == 1 for count in names.values()), names
    return {run.info.run_name: run for run in runs}


def assert_exactly_once(
    client: Any, run: Any, rows: list[dict[str, Any]], keys: list[str] | None = None
) -> None:
    """The server holds each (metric, step) of `rows` once, with its value, and nothing else
    (for `keys` only, when given)."""
    run_id = run.info.run_id
    expected = expected_points(rows)
    if keys is None:  # those the server has and those it should have
        keys = sorted(set(client.get_run(run_id).data.metrics) | {key for key, _ in expected})
    expected = {k: v for k, v in expected.items() if k[0] in keys}
    counts: Counter[tuple[str, int]] = Counter()
    values = {}
    for key in keys:
        for metric in client.get_metric_history(run_id, key):
            counts[key, metric.step] += 1
            values[key, metric.step] = metric.value
    duplicates = {k: n for k, n in counts.items() if n > 1}
    assert not duplicates, f"sent more than once: {duplicates}"
    assert values == pytest.approx(expected)


def cursor_of(experiment: Path) -> dict[str, Any]:
    return json.loads((experiment / CURSOR).read_text())


# --- the tests ------------------------------------------------------------------------------


def test_rows_params_tags_artifacts_and_status(server: Server, client: Any, tmp_path: Path):
    vanilla_rows, gated_rows = rows_of(range(10, 70, 10)), rows_of([10, 20, 30], 0.5)
    experiment = write_experiment(
        tmp_path,
        "gated_attention@smoke",
        {"vanilla": (vanilla_rows, True), "gated": (gated_rows, False)},
    )
    # A run still training whose rows are wider than a batch: 2 x 1200 points, 3 batches.
    wide_rows = [{"step": s, **{f"probe/{i}": i + s / 10 for i in range(1200)}} for s in (1, 2)]
    write_run(experiment, "wide", wide_rows, finished=False)
    write_report(experiment)
    run_files = {p.name: snapshot(p) for p in experiment.iterdir() if p.is_dir()}
    tracker = open_tracker(f"mlflow://127.0.0.1:{server.port}")
    assert tracker.uri == server.uri

    assert tracker.sync(experiment, {"gated": "loss diverged at step 30"}) is None
    assert tracker.sync(experiment, {"gated": "loss diverged at step 30"}) is None  # nothing new

    runs = mlflow_runs(client, experiment)
    assert set(runs) == {"vanilla", "gated", "wide", "report"}
    assert_exactly_once(client, runs["vanilla"], vanilla_rows)
    assert_exactly_once(client, runs["gated"], gated_rows)
    boundaries = [f"probe/{i}" for i in (0, 799, 800, 999, 1000, 1199)]
    assert_exactly_once(client, runs["wide"], wide_rows, keys=boundaries)
    latest = {k: v for k, v in wide_rows[-1].items() if k != "step"}
    assert runs["wide"].data.metrics == pytest.approx(latest)  # every key reached step 2

    vanilla = runs["vanilla"]
    assert vanilla.data.params == FLAT
    config_bytes = (experiment / "vanilla" / "config.json").read_bytes()
    assert vanilla.data.tags["expc.run_dir"] == str((experiment / "vanilla").resolve())
    assert vanilla.data.tags["expc.config_sha256"] == hashlib.sha256(config_bytes).hexdigest()
    assert vanilla.data.tags["expc.spec"] == "/work/specs/gated_attention.exp"
    assert vanilla.data.tags["expc.profile"] == "smoke"
    assert runs["report"].data.tags["expc.kind"] == "report"
    assert runs["report"].data.tags["expc.experiment_dir"] == str(experiment.resolve())

    def artifacts(name: str) -> set[str]:
        return {a.path for a in client.list_artifacts(runs[name].info.run_id)}

    assert artifacts("vanilla") == {"config.json", "summary.json"}
    assert artifacts("gated") == artifacts("wide") == {"config.json"}
    assert artifacts("report") == {"report.md", "val_loss.png"}
    copy = client.download_artifacts(vanilla.info.run_id, "config.json", str(tmp_path))
    assert Path(copy).read_bytes() == config_bytes

    assert vanilla.info.status == "FINISHED"
    assert runs["gated"].info.status == "FAILED"
    assert runs["gated"].data.tags["expc.failure"] == "loss diverged at step 30"
    assert runs["wide"].info.status == "RUNNING"
    assert runs["report"].info.status == "FINISHED"
    # The cursor sits beside the run folders; nothing is added inside them.
    assert cursor_of(experiment)["vanilla"]["last_step"] == 60
    assert {p.name: snapshot(p) for p in experiment.iterdir() if p.is_dir()} == run_files

    # The failed run resumed and finished: FINISHED, its failure tag gone; a new report.
    write_rows(experiment / "gated", rows_of([40], 0.5), mode="a")
    finish(experiment / "gated")
    (experiment / "report.md").write_text("# again\n")
    assert tracker.sync(experiment) is None
    runs = mlflow_runs(client, experiment)
    assert runs["gated"].info.status == "FINISHED"
    assert "expc.failure" not in runs["gated"].data.tags
    assert_exactly_once(client, runs["gated"], rows_of([10, 20, 30, 40], 0.5))
    assert artifacts("report") == {"report.md", "val_loss.png"}
    copy = client.download_artifacts(runs["report"].info.run_id, "report.md", str(tmp_path))
    assert Path(copy).read_text() == "# again\n"


def test_a_resume_rewrites_rows_that_are_sent_once(server: Server, client: Any, tmp_path: Path):
    experiment = write_experiment(tmp_path, "resume@smoke", {"r": (rows_of([10, 20, 30]), False)})
    tracker = open_tracker(server.uri)
    assert tracker.sync(experiment) is None
    # Resumed from the checkpoint at step 20: the rows after it are dropped, then written
    # again (30, the same as before) and on to 60.
    truncate(experiment / "r", 20)
    assert tracker.sync(experiment) is None  # the file is behind the server now
    write_rows(experiment / "r", rows_of(range(30, 70, 10)), mode="a")
    finish(experiment / "r")
    assert tracker.sync(experiment) is None
    run = mlflow_runs(client, experiment)["r"]
    assert_exactly_once(client, run, rows_of(range(10, 70, 10)))
    assert run.info.status == "FINISHED"


def test_a_run_retrained_with_another_config_is_another_mlflow_run(
    server: Server, client: Any, tmp_path: Path
):
    experiment = write_experiment(tmp_path, "retrained@smoke", {"r": (rows_of([10, 20]), True)})
    tracker = open_tracker(server.uri)
    assert tracker.sync(experiment) is None
    run_dir = experiment / "r"  # trained again from scratch, wider: its steps start over
    (run_dir / "config.json").write_text(json.dumps(config_of("r", width=256), indent=2) + "\n")
    write_rows(run_dir, rows_of([10], 2.0))
    (run_dir / "summary.json").unlink()
    assert tracker.sync(experiment) is None
    experiment_id = client.get_experiment_by_name(experiment.name).experiment_id
    runs = {r.data.params["model.width"]: r for r in client.search_runs([experiment_id])}
    assert set(runs) == {"128", "256"}
    assert_exactly_once(client, runs["128"], rows_of([10, 20]))
    assert_exactly_once(client, runs["256"], rows_of([10], 2.0))
    assert (runs["128"].info.status, runs["256"].info.status) == ("FINISHED", "RUNNING")


def test_a_lost_cursor_is_rebuilt_from_the_server(server: Server, client: Any, tmp_path: Path):
    # Both kinds of quote in the path: the run is found again by its tags all the same.
    name = 'it\'s "quoted"@smoke'
    experiment = write_experiment(
        tmp_path, name, {"a": (rows_of([10, 20]), False), "b": (rows_of([10], 1.0), True)}
    )
    tracker = open_tracker(server.uri)
    assert tracker.sync(experiment) is None
    (experiment / CURSOR).unlink()
    write_rows(experiment / "a", rows_of([30]), mode="a")
    assert tracker.sync(experiment) is None
    # A cursor of another server, then one that is not JSON: neither is trusted.
    cursor = cursor_of(experiment)
    cursor["a"]["uri"] = "http://127.0.0.1:9"
    (experiment / CURSOR).write_text(json.dumps(cursor))
    write_rows(experiment / "a", rows_of([40]), mode="a")
    assert tracker.sync(experiment) is None
    (experiment / CURSOR).write_text("{torn")
    truncate(experiment / "a", 20)  # and resumed, rows 30.. on their way again
    assert tracker.sync(experiment) is None
    write_rows(experiment / "a", rows_of([30, 40, 50]), mode="a")
    assert tracker.sync(experiment) is None
    runs = mlflow_runs(client, experiment)
    assert set(runs) == {"a", "b"}
    assert_exactly_once(client, runs["a"], rows_of([10, 20, 30, 40, 50]))
    assert_exactly_once(client, runs["b"], rows_of([10], 1.0))
    assert cursor_of(experiment)["a"]["last_step"] == 50


def test_folders_of_one_name_share_the_experiment_not_the_runs(
    server: Server, client: Any, tmp_path: Path
):
    tracker = open_tracker(server.uri)
    folders = []
    for out in ("out_a", "out_b"):  # `expc run --out out_a`, then `--out out_b`
        experiment = write_experiment(
            tmp_path / out, "shared@smoke", {"r": (rows_of([10, 20]), True)}
        )
        write_report(experiment)
        assert tracker.sync(experiment) is None
        folders.append(experiment)
    experiment_id = client.get_experiment_by_name("shared@smoke").experiment_id
    runs = client.search_runs([experiment_id])
    where = Counter(
        (r.info.run_name, r.data.tags.get("expc.run_dir") or r.data.tags["expc.experiment_dir"])
        for r in runs
    )
    assert where == Counter(
        [("r", str(f.resolve() / "r")) for f in folders]
        + [("report", str(f.resolve())) for f in folders]
    )
    for run in runs:
        if run.info.run_name == "r":
            assert_exactly_once(client, run, rows_of([10, 20]))


def test_a_batch_whose_answer_is_lost_is_not_sent_again(
    server: Server, client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import requests
    from mlflow import MlflowClient

    experiment = write_experiment(tmp_path, "lost@smoke", {"r": (rows_of([10, 20]), False)})
    tracker = open_tracker(server.uri)
    assert tracker.sync(experiment) is None
    real = MlflowClient.log_batch

    def accepted_but_unanswered(self: Any, run_id: str, metrics: Any = (), **kwargs: Any) -> None:
        real(self, run_id, metrics=metrics, **kwargs)
        if metrics:
            raise requests.ConnectionError("('Connection aborted.', RemoteDisconnected())")

    monkeypatch.setattr(MlflowClient, "log_batch", accepted_but_unanswered)
    write_rows(experiment / "r", rows_of([30, 40]), mode="a")
    problem = tracker.sync(experiment)
    assert problem is not None and "did not answer (connection lost)" in problem
    assert cursor_of(experiment)["r"]["last_step"] is None  # not known: ask the server
    monkeypatch.undo()
    assert tracker.sync(experiment) is None
    assert_exactly_once(client, mlflow_runs(client, experiment)["r"], rows_of([10, 20, 30, 40]))
    assert cursor_of(experiment)["r"]["last_step"] == 40


def test_an_unreachable_server_costs_seconds_and_changes_nothing(
    server: Server, client: Any, tmp_path: Path
):
    experiment = write_experiment(tmp_path, "offline@smoke", {"r": (rows_of([10, 20]), True)})
    write_report(experiment)
    before = snapshot(experiment)
    port = free_port()  # nobody listens there
    started = time.monotonic()
    problem = open_tracker(f"mlflow://127.0.0.1:{port}").sync(experiment)
    assert time.monotonic() - started < 15
    assert problem == (
        f"tracking server http://127.0.0.1:{port} did not answer (connection refused); "
        f"the metrics stay in {experiment} and are sent on the next expc run"
    )
    assert snapshot(experiment) == before
    assert open_tracker(server.uri).sync(experiment) is None
    assert_exactly_once(client, mlflow_runs(client, experiment)["r"], rows_of([10, 20]))


def test_a_server_that_never_answers_times_out(tmp_path: Path):
    experiment = write_experiment(tmp_path, "silent@smoke", {"r": (rows_of([10]), True)})
    with socket.socket() as silent:  # accepts connections (the backlog), answers nothing
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        tracker = MlflowTracker(f"http://127.0.0.1:{silent.getsockname()[1]}")
        started = time.monotonic()
        problem = tracker.sync(experiment)
    assert time.monotonic() - started < 15
    assert problem is not None and "did not answer (timed out)" in problem
    assert not (experiment / CURSOR).exists()


class _Unavailable(http.server.BaseHTTPRequestHandler):
    """A server in trouble: 503 to everything."""

    def _answer(self) -> None:
        self.send_response(503)
        self.send_header("Retry-After", "120")  # not obeyed: a sync fails in seconds
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, *args: Any) -> None:
        pass


def test_a_failing_server_is_a_problem_line(tmp_path: Path):
    experiment = write_experiment(tmp_path, "failing@smoke", {"r": (rows_of([10]), True)})
    failing = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Unavailable)
    threading.Thread(target=failing.serve_forever, daemon=True).start()
    try:
        tracker = MlflowTracker(f"http://127.0.0.1:{failing.server_address[1]}")
        started = time.monotonic()
        problem = tracker.sync(experiment)
    finally:
        failing.shutdown()
        failing.server_close()
    assert time.monotonic() - started < 15
    assert problem == (
        f"tracking server {tracker.uri} did not answer (HTTP 503, a server error); "
        f"the metrics stay in {experiment} and are sent on the next expc run"
    )
    assert not (experiment / CURSOR).exists()


def test_a_server_that_dies_mid_run(server: Server, client: Any, tmp_path: Path):
    experiment = write_experiment(tmp_path, "dies@smoke", {"r": (rows_of([10, 20, 30]), False)})
    tracker = open_tracker(server.uri)
    assert tracker.sync(experiment) is None
    server.kill()
    try:
        write_rows(experiment / "r", rows_of([40, 50]), mode="a")
        cursor = (experiment / CURSOR).read_bytes()
        problem = tracker.sync(experiment)
        assert problem is not None and problem.startswith(
            f"tracking server {server.uri} did not answer ("
        )
        assert problem.endswith(
            f"the metrics stay in {experiment} and are sent on the next expc run"
        )
        assert (experiment / CURSOR).read_bytes() == cursor
    finally:
        server.start()  # the same database and artifacts, the same port
    write_rows(experiment / "r", rows_of([60]), mode="a")
    finish(experiment / "r")
    assert tracker.sync(experiment) is None
    run = mlflow_runs(client, experiment)["r"]
    assert_exactly_once(client, run, rows_of(range(10, 70, 10)))
    assert run.info.status == "FINISHED"


@pytest.mark.parametrize(
    ("uri", "url"),
    [
        ("mlflow://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("mlflow://Tracking.Example.org:5000/", "http://tracking.example.org:5000"),
        ("mlflow+https://tracking.example.org", "https://tracking.example.org"),
        (
            "mlflow+https://tracking.example.org:8443/mlflow/",
            "https://tracking.example.org:8443/mlflow",
        ),
        ("http://[::1]:5000", "http://[::1]:5000"),
        ("https://tracking.example.org/prefix", "https://tracking.example.org/prefix"),
    ],
)
def test_uri_forms(uri: str, url: str):
    assert open_tracker(uri).uri == url


@pytest.mark.parametrize(
    ("uri", "why"),
    [
        ("file:///tmp/mlruns", "has scheme 'file'"),
        ("mlfow://127.0.0.1:5000", "has scheme 'mlfow'"),
        ("127.0.0.1:5000", "has no scheme"),
        ("mlflow://:5000", "names no host"),
        ("mlflow:127.0.0.1:5000", "names no host"),
        ("mlflow://127.0.0.1", "names no port"),
        ("mlflow://127.0.0.1:http", "has a bad port 'http'"),
        ("mlflow://127.0.0.1:70000", "has a bad port '70000'"),
        ("mlflow://127.0.0.1:0", "has a bad port '0'"),
        ("http://user:secret@127.0.0.1:5000", "holds credentials"),
        ("http://127.0.0.1:5000/?x=1", "has a query or a fragment"),
        ("http://host name:5000", "holds spaces"),
        ("", "is empty"),
    ],
)
def test_bad_uris(uri: str, why: str):
    with pytest.raises(RunError) as caught:
        open_tracker(uri)
    message = str(caught.value)
    assert why in message
    assert message.endswith(
        "use mlflow://HOST:PORT, mlflow+https://HOST[:PORT][/PATH] or http(s)://HOST[:PORT][/PATH]"
    )


def test_opening_a_tracker_does_not_import_mlflow():
    code = (
        "import sys; from expc.runtime.tracking import open_tracker; "
        "open_tracker('mlflow://127.0.0.1:5000'); assert 'mlflow' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
