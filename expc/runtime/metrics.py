"""metrics.jsonl: one JSON object per evaluation, appended and flushed as it happens."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any


def _clean(value: Any) -> Any:
    # JSON has no NaN/inf; a diverged run must still produce a readable file.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricsLogger:
    """Writes config.json at start, a metrics.jsonl row per call, summary.json at close.

    With `resume_from=STEP` (continuing from a checkpoint taken at STEP) the rows logged
    after STEP by the interrupted run, and a torn last line, are dropped first, so the
    file ends up exactly as an uninterrupted run writes it.
    """

    def __init__(
        self,
        out_dir: Path,
        config: dict[str, Any],
        resume_from: int | None = None,
        tensorboard: bool = False,
    ):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / "summary.json").unlink(missing_ok=True)
        (self.out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        self.path = self.out_dir / "metrics.jsonl"
        self.rows: list[dict[str, Any]] = []
        if resume_from is not None:
            self.rows = [r for r in read_metrics(self.out_dir) if r.get("step", 0) <= resume_from]
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text("".join(json.dumps(r) + "\n" for r in self.rows), encoding="utf-8")
            os.replace(tmp, self.path)
        self._file = self.path.open("a" if resume_from is not None else "w", encoding="utf-8")
        self._writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # slow import: only when asked

            # purge_step drops events an interrupted run wrote after its checkpoint.
            self._writer = SummaryWriter(str(self.out_dir / "tensorboard"), purge_step=resume_from)

    def log(self, row: dict[str, Any]) -> None:
        clean = {k: _clean(v) for k, v in row.items()}
        self._file.write(json.dumps(clean) + "\n")
        self._file.flush()
        # On disk before the next checkpoint can cover it: a crash after a checkpoint never
        # leaves rows the checkpoint counts on missing. Rows come once per evaluation.
        os.fsync(self._file.fileno())
        self.rows.append(clean)
        if self._writer is not None and "step" in clean:
            for key, value in clean.items():
                if key != "step" and isinstance(value, int | float):
                    self._writer.add_scalar(key, value, clean["step"])
            self._writer.flush()

    def close(self, summary: dict[str, Any]) -> None:
        self._file.close()
        if self._writer is not None:
            self._writer.close()
        text = json.dumps({k: _clean(v) for k, v in summary.items()}, indent=2) + "\n"
        # Whole or not at all: summary.json is what marks the run finished.
        tmp = self.out_dir / "summary.json.tmp"
        tmp.write_text(text)
        os.replace(tmp, self.out_dir / "summary.json")


def read_metrics(run_dir: Path, skipped: list[str] | None = None) -> list[dict[str, Any]]:
    """The rows of metrics.jsonl: its lines that are JSON objects. A torn last line (a run
    killed mid-write) is skipped, and so are other lines that do not parse or are not an
    object (a bare number, a list): each of those is noted in `skipped`, when given, as
    "line N: why"."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    # Rows are split on "\n" alone: a JSON string may hold U+2028 and the like.
    lines = path.read_text(encoding="utf-8", errors="replace").split("\n")
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError):  # also a >4300-digit integer, deep nesting
            if skipped is not None and number < len(lines):  # not a torn last line
                skipped.append(f"line {number}: not valid JSON")
            continue
        if not isinstance(row, dict):
            if skipped is not None:
                kind = {list: "array", str: "string", bool: "boolean"}.get(type(row), "number")
                kind = "null" if row is None else kind
                skipped.append(f"line {number}: a JSON {kind}, not an object")
            continue
        rows.append(row)
    return rows
