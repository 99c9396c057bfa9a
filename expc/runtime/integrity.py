"""Whether a run folder's files are what its run wrote: a run is "finished" only when they
verify, so a corrupted, truncated or deleted `metrics.jsonl` is never reported (or skipped)
as a result.

At close, `record` writes `integrity.json`: the number of rows, the last step and the
sha256 of `metrics.jsonl` and of `summary.json` as written. `problem` checks a folder
against it: every row parses as a JSON object, steps only increase, the summary's step is
the last row's, and the count and checksums match. Folders written before
`integrity.json` existed are checked for everything but the checksums (and those written
before it recorded the summary's, for everything but that one).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

FILE = "integrity.json"


def _digest(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def _rows(path: Path) -> tuple[list[dict[str, Any]], int | None]:
    """The rows of metrics.jsonl, and the 1-based number of the first line that is not a
    JSON object (None when all are)."""
    rows: list[dict[str, Any]] = []
    with path.open("rb") as file:
        for number, line in enumerate(file, start=1):
            try:
                row = json.loads(line)
            except ValueError:
                return rows, number
            if not isinstance(row, dict):
                return rows, number
            rows.append(row)
    return rows, None


def record(run_dir: Path) -> None:
    """Write integrity.json for the metrics.jsonl a run has just closed (atomically)."""
    run_dir = Path(run_dir)
    metrics = run_dir / "metrics.jsonl"
    rows, _ = _rows(metrics)
    entry = {
        "rows": len(rows),
        "last_step": rows[-1].get("step") if rows else None,
        "metrics_sha256": _digest(metrics),
    }
    if (run_dir / "summary.json").is_file():
        entry["summary_sha256"] = _digest(run_dir / "summary.json")
    tmp = run_dir / f"{FILE}.tmp"
    tmp.write_text(json.dumps(entry, indent=2) + "\n")
    os.replace(tmp, run_dir / FILE)


def problem(run_dir: Path) -> str | None:
    """What is wrong with a finished run's files, or None when they verify."""
    run_dir = Path(run_dir)
    metrics = run_dir / "metrics.jsonl"
    if not metrics.is_file():
        return "metrics.jsonl is missing"
    rows, bad_line = _rows(metrics)
    if bad_line is not None:
        return f"metrics.jsonl line {bad_line} is not a JSON object"
    if not rows:
        return "metrics.jsonl is empty"
    steps = [row.get("step") for row in rows]
    if any(not isinstance(s, int | float) for s in steps):
        return "a metrics.jsonl row has no step"
    for index in range(1, len(steps)):
        if steps[index] <= steps[index - 1]:
            return f"metrics.jsonl steps do not increase at line {index + 1}"
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return "summary.json is missing or not JSON"
    if isinstance(summary, dict) and "step" in summary and summary["step"] != steps[-1]:
        return f"summary.json says step {summary['step']}, the last row is step {steps[-1]}"
    try:
        recorded = json.loads((run_dir / FILE).read_text())
    except FileNotFoundError:
        return None  # written before integrity.json existed: the checks above are all
    except (OSError, ValueError):
        return f"{FILE} is not JSON"
    if recorded.get("rows") != len(rows):
        return f"metrics.jsonl has {len(rows)} rows, {recorded.get('rows')} were written"
    if recorded.get("metrics_sha256") != _digest(metrics):
        return "metrics.jsonl differs from what the run wrote (checksum)"
    summary_sha = recorded.get("summary_sha256")
    if summary_sha is not None and summary_sha != _digest(run_dir / "summary.json"):
        return "summary.json differs from what the run wrote (checksum)"
    return None


def corrupt_line(run_dir: Path) -> int | None:
    """The first line of metrics.jsonl before its last that is not a JSON object (a torn
    last line is what a kill leaves, and resuming drops it)."""
    metrics = Path(run_dir) / "metrics.jsonl"
    if not metrics.is_file():
        return None
    total = sum(1 for _ in metrics.open("rb"))
    _, bad_line = _rows(metrics)
    return bad_line if bad_line is not None and bad_line < total else None
