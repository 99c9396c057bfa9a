"""metrics.jsonl: one JSON object per evaluation, appended and flushed as it happens."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def _clean(value: Any) -> Any:
    # JSON has no NaN/inf; a diverged run must still produce a readable file.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricsLogger:
    """Writes config.json at start, a metrics.jsonl row per call, summary.json at close."""

    def __init__(self, out_dir: Path, config: dict[str, Any]):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        self.path = self.out_dir / "metrics.jsonl"
        self._file = self.path.open("w", encoding="utf-8")

    def log(self, row: dict[str, Any]) -> None:
        self._file.write(json.dumps({k: _clean(v) for k, v in row.items()}) + "\n")
        self._file.flush()

    def close(self, summary: dict[str, Any]) -> None:
        self._file.close()
        text = json.dumps({k: _clean(v) for k, v in summary.items()}, indent=2) + "\n"
        (self.out_dir / "summary.json").write_text(text)


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
