"""Experiment folders copied to an MLflow tracking server (`--track URI`, `tracking { uri }`).

One MLflow experiment per experiment folder, named by it; one MLflow run per run folder
(params: the flattened config.json; metrics: the rows of metrics.jsonl; artifacts:
config.json and summary.json), found again by its tags `expc.run_dir` and
`expc.config_sha256`; and one run named `report` (tag `expc.kind`) holding report.md and its
plots. The run folders stay the record and the server holds a copy: `sync` sends what the
server has not received yet, and when the server is down or fails it returns one line saying
so and raises nothing, so the rest goes with the next sync.

Exactly once. Rows are keyed by their step, which strictly increases within a run, and a run
resumed from a checkpoint at step S truncates metrics.jsonl to the rows up to S and writes the
later ones again, the same as before. So what was sent is a step, never a row count:
`.tracking.json` in the experiment folder keeps, per run, the last step the server holds. It
is set to "unknown" (null) before a batch goes out and to the new step once the server
accepted all of them, so a sync killed or cut off halfway leaves "unknown", never a step
behind the server. Where the entry is unknown, missing or names another server or config,
the server's metric history says which steps it holds. The cursor also keeps the digest of
each file sent, so an unchanged file is not sent again.

mlflow is imported inside the functions that talk to the server: the import takes seconds,
and compiling or running a spec that tracks nothing never needs it.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import math
import os
import posixpath
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from expc import tracking_uri
from expc.runtime.errors import RunError
from expc.runtime.metrics import read_metrics
from expc.runtime.report import run_dirs

if TYPE_CHECKING:  # only for the type hints: importing mlflow takes seconds
    from mlflow import MlflowClient
    from mlflow.entities import Run

ACCEPTED_FORMS = tracking_uri.ACCEPTED_FORMS

CURSOR = ".tracking.json"
# The cursor's entry for the report run: run names are letters, digits and `_.+-`, so no
# run folder has this name.
REPORT_ENTRY = "@report"
REPORT_FILES = (".png", ".svg", ".csv")  # beside report.md: what the report links to

# MLflow's limits (mlflow.utils.validation): a batch holds at most 1000 metrics, 100 params
# and 100 tags, 1000 entities in all, and its request at most 1 MB. Batches here stay well
# under the size, as JSON can escape a non-ASCII name to six bytes a character.
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_PER_BATCH = 100
MAX_BATCH_BYTES = 500_000
MAX_NAME_LENGTH = 250
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000

# MLflow's own defaults retry a dead server for minutes (7 retries with exponential backoff,
# 120 s timeouts, a 503's Retry-After obeyed). A sync gives up on the first request that
# fails, and that request is tried twice at 4 s each: seconds, not minutes. A value set in
# the environment is the user's choice and is kept. Also quiet: no "View run at" lines on
# stdout and no upload progress bars.
_HTTP_SETTINGS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "4",
    "MLFLOW_HTTP_RESPECT_RETRY_AFTER_HEADER": "false",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}
LOCK_WAIT_S = 120.0  # another process syncing the same folder: how long to wait for it

_NO_FAILURES: Mapping[str, str] = MappingProxyType({})


class Tracker(Protocol):
    """What the runner calls: `sync` after runs end, returning a problem line or None."""

    @property
    def uri(self) -> str:
        """The http(s) URL of the server."""
        ...

    def sync(self, experiment_dir: Path, failed: Mapping[str, str] = _NO_FAILURES) -> str | None:
        """Send what the server has not received yet; never raises for server trouble."""
        ...


# --- the URI ----------------------------------------------------------------------------


def server_url(uri: str) -> str:
    """The http(s) URL a tracking URI names (expc/tracking_uri.py); a RunError otherwise."""
    try:
        return tracking_uri.server_url(uri)
    except ValueError as error:
        raise RunError(str(error)) from None


def open_tracker(uri: str) -> MlflowTracker:
    """A tracker for `uri`, checked now (before any run trains) without contacting it."""
    url = server_url(uri)
    if importlib.util.find_spec("mlflow") is None:  # finds it without importing it
        raise RunError(f"tracking to {uri} needs mlflow: pip install mlflow")
    return MlflowTracker(url)


# --- what a run folder holds ----------------------------------------------------------------

FAILURE_TAG = "expc.failure"
# MLflow's alphabet of param, metric and tag names (mlflow.utils.validation, off Windows).
_NAME = re.compile(r"[/\w.\- :]+")
_INT64 = range(-(2**63), 2**63)  # MLflow's steps are 64-bit integers


@lru_cache(maxsize=65536)  # asked for every key of every row
def valid_name(name: str) -> bool:
    """Whether MLflow takes `name` for a param or a metric: its alphabet, at most
    MAX_NAME_LENGTH characters, and a path that names itself (no `a//b`, `./a`, `..`, `/a`).
    One name it refuses makes the server refuse the whole batch, and so every later sync: such
    names are left out instead."""
    if not (len(name) <= MAX_NAME_LENGTH and _NAME.fullmatch(name)):
        return False
    norm = posixpath.normpath(name)
    return norm == name and norm != "." and not norm.startswith(("..", "/"))


def cut(text: str, limit: int) -> str:
    """`text` within MLflow's `limit` of characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def param_text(value: Any) -> str:
    """A config value as a param: a string as it is, anything else as JSON (true, null, [1, 2])."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """config.json as params: nested names joined by dots ("model.layers" -> "4"). Where two
    spellings give one name ({"a.b": 1, "a": {"b": 2}}) the first wins: MLflow refuses a
    param logged again with another value."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            for sub, text in flatten(value, f"{name}.").items():
                flat.setdefault(sub, text)
        else:
            flat.setdefault(name, param_text(value))
    return flat


def run_params(config: Any) -> dict[str, str]:
    """A run's params: its flattened config, without names MLflow refuses, values cut."""
    if not isinstance(config, Mapping):
        return {}
    flat = flatten(config)
    return {name: cut(text, MAX_PARAM_VALUE) for name, text in flat.items() if valid_name(name)}


def is_step(value: Any) -> bool:
    """Whether `value` is a step MLflow takes: an integer (not a bool) of 64 bits."""
    return isinstance(value, int) and not isinstance(value, bool) and value in _INT64


def metric_value(value: Any) -> float | None:
    """A row's value as a metric: a number (a bool as 0 or 1); None for null, a non-finite
    or too large number and anything not a number (a string, a list)."""
    if not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer past a double
        return None
    return number if math.isfinite(number) else None


def metric_points(rows: Sequence[Mapping[str, Any]]) -> list[tuple[int, dict[str, float]]]:
    """Each row's step and metrics (its numeric keys but "step"), in file order. A row with no
    integer step, or one not past the step before it (never so in a file `expc run` writes),
    is skipped: steps are what keeps each point sent once."""
    points: list[tuple[int, dict[str, float]]] = []
    for row in rows:
        step = row.get("step")
        if not is_step(step) or (points and step <= points[-1][0]):
            continue
        values = {}
        for key, raw in row.items():
            value = metric_value(raw)
            if key != "step" and value is not None and valid_name(key):
                values[key] = value
        points.append((step, values))
    return points


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def spec_tags(experiment_dir: Path) -> dict[str, str]:
    """`expc.spec` and `expc.profile` from spec.json (what `expc run` recorded); "" for
    what it does not say."""
    try:
        info = json.loads((experiment_dir / "spec.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        info = None
    info = info if isinstance(info, dict) else {}
    return {
        "expc.spec": cut(str(info.get("source") or ""), MAX_TAG_VALUE),
        "expc.profile": cut(str(info.get("profile") or ""), MAX_TAG_VALUE),
    }


def run_folders(experiment_dir: Path) -> list[Path]:
    """The run folders to sync: those with a config.json (its digest names the MLflow run)."""
    return [path for path in run_dirs(experiment_dir) if (path / "config.json").is_file()]


def report_files(experiment_dir: Path) -> list[Path]:
    """report.md and what it links to, directly in the experiment folder."""
    found = [experiment_dir / "report.md"] if (experiment_dir / "report.md").is_file() else []
    beside = (p for p in experiment_dir.iterdir() if p.suffix.lower() in REPORT_FILES)
    return found + sorted(p for p in beside if p.is_file())


# --- the cursor -----------------------------------------------------------------------------


def read_cursor(experiment_dir: Path) -> dict[str, Any]:
    """`.tracking.json`, or {} where there is none or it is torn: then the server is asked."""
    try:
        cursor = json.loads((experiment_dir / CURSOR).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    return cursor if isinstance(cursor, dict) else {}


def write_cursor(experiment_dir: Path, cursor: Mapping[str, Any]) -> None:
    """Whole or not at all (a temporary file, then os.replace): a torn cursor costs a read of
    the server's history, never a point sent twice."""
    path = experiment_dir / CURSOR
    temporary = path.with_name(f"{CURSOR}.{os.getpid()}.tmp")
    try:
        temporary.write_text(json.dumps(cursor, indent=2, sort_keys=True) + "\n", "utf-8")
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)  # nothing left behind in the folder
        raise


# --- batches --------------------------------------------------------------------------------

T = TypeVar("T")
_REQUEST_OVERHEAD = 200  # bytes of a log-batch request beside its entries: the run id, braces


def batches(items: Sequence[T], most: int, size: Callable[[T], int]) -> list[list[T]]:
    """`items` in order, in batches of at most `most` items and MAX_BATCH_BYTES estimated
    bytes: each batch is one request, so the server accepts or refuses it whole
    (MlflowClient.log_batch splits a larger call itself, and that can half-succeed)."""
    out: list[list[T]] = []
    current: list[T] = []
    used = _REQUEST_OVERHEAD
    for item in items:
        bytes_ = size(item)
        if current and (len(current) >= most or used + bytes_ > MAX_BATCH_BYTES):
            out.append(current)
            current, used = [], _REQUEST_OVERHEAD
        current.append(item)
        used += bytes_
    if current:
        out.append(current)
    return out


def metric_size(key: str, value: float, step: int, timestamp: int) -> int:
    """A metric's bytes in a request (ASCII-escaped JSON: the most a name can take)."""
    entry = {"key": key, "value": value, "timestamp": timestamp, "step": step}
    return len(json.dumps(entry)) + 2


def param_size(item: tuple[str, str]) -> int:
    return len(json.dumps({"key": item[0], "value": item[1]})) + 2


# --- problems -------------------------------------------------------------------------------


class _Refused(Exception):
    """Something the server holds stops the sync (a deleted experiment of the folder's name)."""


class _Busy(Exception):
    """Another process held the experiment folder's lock for LOCK_WAIT_S."""


def _chain(error: BaseException) -> Iterator[BaseException]:
    """`error` and what caused it: requests and urllib3 keep the cause in `__cause__`,
    `__context__`, `reason` (MaxRetryError) or an argument, and mlflow wraps the lot."""
    seen: set[int] = set()
    todo: list[Any] = [error]
    while todo:
        current = todo.pop(0)
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [current.__cause__, current.__context__, getattr(current, "reason", None)]
        todo += list(current.args)


# The words of an HTTP status in urllib3's retry error ("too many 503 error responses") and in
# mlflow's own ("failed with error code 503 != 200").
_STATUS = re.compile(r"too many (\d{3}) error responses|error code (\d{3}) != \d{3}")


def _status_reason(chain: list[BaseException]) -> str | None:
    """The reason for an answer that is not one (a 5xx, 429 or 408): "HTTP 503, a server
    error"; None where no such status was given."""
    for error in chain:
        found = _STATUS.search(str(error))
        if found is None:
            continue
        status = int(found[1] or found[2])
        if status >= 500:
            return f"HTTP {status}, a server error"
        if status in (408, 429):
            return f"HTTP {status}, {'a request timeout' if status == 408 else 'too many requests'}"
    return None


def unanswered(error: BaseException) -> str | None:
    """Why the server did not answer (connection refused, timed out, connection lost, host
    not found, TLS handshake failed, HTTP 503...), or None where it answered."""
    import requests
    import urllib3.exceptions

    chain = list(_chain(error))
    status = _status_reason(chain)
    if status is not None:
        return status
    kinds: list[tuple[str, tuple[type[BaseException], ...]]] = [
        ("connection refused", (ConnectionRefusedError,)),
        ("host not found", (socket.gaierror, urllib3.exceptions.NameResolutionError)),
        ("TLS handshake failed", (ssl.SSLError, requests.exceptions.SSLError)),
        ("timed out", (TimeoutError, requests.Timeout, urllib3.exceptions.TimeoutError)),
        (
            "connection lost",
            (ConnectionError, requests.ConnectionError, urllib3.exceptions.ProtocolError),
        ),
    ]
    for reason, types in kinds:  # the most telling first: a refusal is also a ConnectionError
        if any(isinstance(cause, types) for cause in chain):
            return reason
    return None


def _detail(error: BaseException) -> str:
    """The first line of an error's message, without the body of an answer (an HTML page)."""
    text = str(getattr(error, "message", None) or error).strip()
    text = text.splitlines()[0].partition(". Response body:")[0] if text else ""
    return cut(text or type(error).__name__, 300)


def problem_line(uri: str, experiment_dir: Path, error: BaseException) -> str:
    """The one line a failed sync returns: what went wrong, and that nothing is lost."""
    from mlflow.exceptions import MlflowException

    tail = f"; the metrics stay in {experiment_dir} and are sent on the next expc run"
    if isinstance(error, _Busy):
        why = f"another process held {experiment_dir} for {LOCK_WAIT_S:g} s"
        return f"tracking server {uri} was not synced ({why}){tail}"
    reason = unanswered(error)
    if reason is not None:
        return f"tracking server {uri} did not answer ({reason}){tail}"
    if isinstance(error, MlflowException | _Refused):
        return f"tracking server {uri} refused the sync ({_detail(error)}){tail}"
    # Not the server's doing: a file here that cannot be read or written, or a bug.
    return f"tracking server {uri} was not synced ({type(error).__name__}: {_detail(error)}){tail}"


# --- the sync -------------------------------------------------------------------------------


@contextmanager
def _http_settings() -> Iterator[None]:
    """_HTTP_SETTINGS in the environment for the duration of a sync (mlflow reads them at
    every request), where the user has not set them already."""
    added = [name for name in _HTTP_SETTINGS if name not in os.environ]
    for name in added:
        os.environ[name] = _HTTP_SETTINGS[name]
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


@contextmanager
def _locked(experiment_dir: Path) -> Iterator[None]:
    """An exclusive flock on the experiment folder itself (no lock file: nothing is added to
    it), so two processes syncing one folder never send the same rows. Closing releases it."""
    fd = os.open(experiment_dir, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise _Busy() from None
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)


def _quoted(value: str) -> str | None:
    """`value` as a string of MLflow's search filter, or None where it cannot be one: the
    filter language has no escapes, so a value holding both quotes or a backslash is
    compared in Python instead."""
    if "\\" in value or not value.isprintable():
        return None
    if "'" not in value:
        return f"'{value}'"
    return f'"{value}"' if '"' not in value else None


_RUN_ID = re.compile(r"[a-zA-Z0-9][\w\-]{0,255}")  # mlflow's; another makes get_run refuse


class _Sync:
    """One sync of one experiment folder, under its lock: the client, the cursor, the
    MLflow experiment (looked up once, created on first need)."""

    def __init__(
        self, client: MlflowClient, uri: str, experiment_dir: Path, failed: Mapping[str, str]
    ) -> None:
        self.client = client
        self.uri = uri
        self.dir = experiment_dir
        self.failed = failed
        self.cursor = read_cursor(experiment_dir)
        self.written = json.dumps(self.cursor, sort_keys=True)  # written only when it changes
        self.spec_tags = spec_tags(experiment_dir)
        self._experiment_id: str | None = None

    def run(self) -> None:
        for run_dir in run_folders(self.dir):
            self.sync_run(run_dir)
        files = report_files(self.dir)
        if files:
            self.sync_report(files)

    def save(self) -> None:
        text = json.dumps(self.cursor, sort_keys=True)
        if text != self.written:
            write_cursor(self.dir, self.cursor)
            self.written = text

    # --- the experiment and its runs

    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            self._experiment_id = self._experiment()
        return self._experiment_id

    def _experiment(self) -> str:
        """The MLflow experiment named by the folder, created when there is none."""
        from mlflow.exceptions import MlflowException

        name = Path(os.path.abspath(self.dir)).name  # "." names its folder too
        found = self.client.get_experiment_by_name(name)
        if found is None:
            try:
                return self.client.create_experiment(name)
            except MlflowException as error:  # created by someone else in between
                if error.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                found = self.client.get_experiment_by_name(name)
                if found is None:
                    raise
        if found.lifecycle_stage != "active":  # its name stays taken until deleted for good
            raise _Refused(f"its experiment {name!r} is deleted: restore it, or delete it for good")
        return found.experiment_id

    def alive(self, run_id: Any) -> Run | None:
        """The run a cursor names, while it exists, is not deleted and is in the experiment."""
        from mlflow.exceptions import MlflowException

        if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
            return None
        try:
            run = self.client.get_run(run_id)
        except MlflowException as error:
            if error.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
        if run.info.lifecycle_stage != "active" or run.info.experiment_id != self.experiment_id:
            return None
        return run

    def find(self, tags: Mapping[str, str]) -> Run | None:
        """The oldest live run of the experiment holding these tags."""
        quoted = {key: _quoted(value) for key, value in tags.items()}
        where = " and ".join(f"tags.`{k}` = {q}" for k, q in quoted.items() if q is not None)
        found: list[Run] = []
        token = None
        while True:  # search_runs answers a page at a time
            page = self.client.search_runs(
                [self.experiment_id], filter_string=where, max_results=1000, page_token=token
            )
            found += [r for r in page if all(r.data.tags.get(k) == v for k, v in tags.items())]
            token = page.token
            if not token:
                break
        return min(found, key=lambda run: run.info.start_time or 0, default=None)

    def open_run(
        self, entry: dict[str, Any] | None, keys: Mapping[str, str], name: str, tags: Mapping
    ) -> tuple[Run, dict[str, Any], bool]:
        """The MLflow run of a cursor entry: the one it names while that lives, else the one
        its `keys` (tags) find, else a new one tagged with `keys` and `tags`. Returns the run,
        the entry (a new one unless the old one named this run) and whether it is new."""
        if entry is not None:
            run = self.alive(entry.get("run_id"))
            if run is not None:
                if not isinstance(entry.get("artifacts"), dict):
                    entry["artifacts"] = {}
                return run, entry, False
        run = self.find(keys)
        created = run is None
        if run is None:
            run = self.client.create_run(self.experiment_id, run_name=name, tags={**keys, **tags})
        return run, {"uri": self.uri, "run_id": run.info.run_id, "artifacts": {}}, created

    # --- a run folder

    def sync_run(self, run_dir: Path) -> None:
        name = run_dir.name
        config_bytes = (run_dir / "config.json").read_bytes()
        digest = hashlib.sha256(config_bytes).hexdigest()
        old = self.cursor.get(name)
        trusted = isinstance(old, dict) and (old.get("uri"), old.get("config_sha256")) == (
            self.uri,
            digest,
        )
        keys = {"expc.run_dir": cut(str(run_dir.resolve()), MAX_TAG_VALUE)}
        keys["expc.config_sha256"] = digest
        run, entry, created = self.open_run(old if trusted else None, keys, name, self.spec_tags)
        if entry is not old:
            entry.update(config_sha256=digest, last_step=None)
        try:
            config = json.loads(config_bytes)
        except (ValueError, RecursionError):  # sent all the same, as an artifact
            config = None
        self.log_params(run, run_params(config))
        self.cursor[name] = entry
        self.send_metrics(name, run, entry, created, read_metrics(run_dir))
        files = [run_dir / "config.json"]
        if (run_dir / "summary.json").is_file():
            files.append(run_dir / "summary.json")
        self.send_files(name, entry, run.info.run_id, files)
        failure = self.failed.get(name)
        self.set_status(run, failure, finished=(run_dir / "summary.json").is_file())
        self.save()

    def log_params(self, run: Run, params: Mapping[str, str]) -> None:
        """The params the run lacks: all of them for a new run; for one found again, those a
        sync cut off before it logged them (one logged again with its value is no error)."""
        from mlflow.entities import Param

        missing = [(k, v) for k, v in params.items() if k not in run.data.params]
        for batch in batches(missing, MAX_PARAMS_PER_BATCH, param_size):
            self.client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in batch])

    def held_steps(self, run: Run) -> dict[str, int]:
        """The last step the server holds of each metric of the run. Batches go out in step
        order, so the server holds a prefix of each metric's points: those up to this step."""
        held = {}
        for key in sorted(run.data.metrics):
            steps = [m.step for m in self.client.get_metric_history(run.info.run_id, key)]
            if steps:
                held[key] = max(steps)
        return held

    def send_metrics(
        self,
        name: str,
        run: Run,
        entry: dict[str, Any],
        created: bool,
        rows: Sequence[Mapping[str, Any]],
    ) -> None:
        """The points the server lacks, in batches, the cursor "unknown" while they go out."""
        from mlflow.entities import Metric

        points = metric_points(rows)
        last = entry.get("last_step")
        if is_step(last):  # the server holds every point of the rows up to `last`
            held: dict[str, int] = {}
        else:  # unknown: the server's history says, per metric (nothing for a new run)
            last = None
            held = {} if created else self.held_steps(run)

        def new(key: str, step: int) -> bool:
            since = held.get(key, last)
            return since is None or step > since

        todo = [(k, v, step) for step, values in points for k, v in values.items() if new(k, step)]
        file_last = points[-1][0] if points else None
        if last is not None:  # a resumed run rewrites the rows up to `last`: not sent again
            after = last if file_last is None else max(last, file_last)
        else:
            top = max(held.values(), default=None)
            # Where the server holds steps past the file (a resumed run, rows on their way
            # again), the file's last step would call rows sent that were only partly sent,
            # so it stays unknown until the file catches up.
            ok = top is None or (file_last is not None and top <= file_last)
            after = file_last if ok else None
        if todo:
            entry["last_step"] = None  # saved before a batch goes out: it may be cut off
            self.save()
            stamp = int(time.time() * 1000)
            for batch in batches(todo, MAX_METRICS_PER_BATCH, lambda m: metric_size(*m, stamp)):
                metrics = [Metric(key, value, stamp, step) for key, value, step in batch]
                self.client.log_batch(run.info.run_id, metrics=metrics)
        entry["last_step"] = after
        self.save()

    def send_files(self, name: str, entry: dict[str, Any], run_id: str, files: list[Path]) -> None:
        """Files as artifacts of the run, each unless the server has it with this digest."""
        sent = entry["artifacts"]
        for path in files:
            digest = sha256_of(path)
            if sent.get(path.name) == digest:
                continue
            self.client.log_artifact(run_id, str(path))
            sent[path.name] = digest
            self.cursor[name] = entry
            self.save()

    def set_status(self, run: Run, failure: str | None, finished: bool) -> None:
        """FAILED with its reason for a run that failed (even with a summary.json), FINISHED
        for one with a summary.json, RUNNING otherwise; a failure tag goes once it is past."""
        run_id, tags = run.info.run_id, run.data.tags
        if failure is not None:
            reason = cut(failure, MAX_TAG_VALUE)
            if tags.get(FAILURE_TAG) != reason:
                self.client.set_tag(run_id, FAILURE_TAG, reason)
            status = "FAILED"
        else:
            if FAILURE_TAG in tags:
                self.client.delete_tag(run_id, FAILURE_TAG)
            status = "FINISHED" if finished else "RUNNING"
        if run.info.status == status:
            return
        if status == "RUNNING":  # a finished or failed run resumed
            self.client.update_run(run_id, status=status)
        else:
            self.client.set_terminated(run_id, status)

    # --- the report

    def sync_report(self, files: list[Path]) -> None:
        """report.md and its plots as artifacts of the run `report` of this folder."""
        old = self.cursor.get(REPORT_ENTRY)
        trusted = isinstance(old, dict) and old.get("uri") == self.uri
        keys = {
            "expc.kind": "report",
            "expc.experiment_dir": cut(str(self.dir.resolve()), MAX_TAG_VALUE),
        }
        run, entry, _ = self.open_run(old if trusted else None, keys, "report", self.spec_tags)
        self.cursor[REPORT_ENTRY] = entry
        self.send_files(REPORT_ENTRY, entry, run.info.run_id, files)
        if run.info.status != "FINISHED":
            self.client.set_terminated(run.info.run_id, "FINISHED")
        self.save()


@dataclass(frozen=True)
class MlflowTracker:
    """Experiment folders to the MLflow server at `uri` (an http(s) URL)."""

    uri: str

    def sync(self, experiment_dir: Path, failed: Mapping[str, str] = _NO_FAILURES) -> str | None:
        """Send what the server has not received yet of `experiment_dir`; `failed` maps the
        runs that failed to their reason. None when all went, else the one line that says
        what went wrong: nothing here raises for server trouble, and what was not sent goes
        with the next sync."""
        experiment_dir = Path(experiment_dir)
        try:
            with _locked(experiment_dir), _http_settings():
                from mlflow import MlflowClient

                _Sync(MlflowClient(tracking_uri=self.uri), self.uri, experiment_dir, failed).run()
        except Exception as error:  # the server's trouble is a line, never a failed run
            return problem_line(self.uri, experiment_dir, error)
        return None
