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
        (self.out_dir / "summary.json").write_text(text)


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The rows of metrics.jsonl; a torn last line (a run killed mid-write) is skipped."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows
