"""Counting loss spikes, the Gated Attention paper's training-stability signal."""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Callable


class SpikeCounter:
    """A step is a spike when its loss exceeds `factor` times the median of the previous
    `window` losses (only once `window` losses have been seen); a non-finite loss is one."""

    def __init__(self, factor: float = 1.5, window: int = 50):
        self.factor = factor
        self.recent: deque[float] = deque(maxlen=window)
        self.count = 0
        self.steps: list[int] = []  # 1-based steps that spiked
        self._seen = 0

    def state_dict(self) -> dict:
        return {
            "recent": list(self.recent),
            "count": self.count,
            "steps": self.steps,
            "seen": self._seen,
        }

    def load_state_dict(self, state: dict) -> None:
        self.recent.clear()
        self.recent.extend(state["recent"])
        self.count, self.steps, self._seen = state["count"], list(state["steps"]), state["seen"]

    def update(self, loss: float) -> bool:
        self._seen += 1
        full = len(self.recent) == self.recent.maxlen
        spike = not math.isfinite(loss) or (
            full and loss > self.factor * statistics.median(self.recent)
        )
        if spike:
            self.count += 1
            self.steps.append(self._seen)
        if math.isfinite(loss):
            self.recent.append(loss)
        return spike


def stability_lines(runs: dict[str, list[dict]], cell: Callable[[str], str]) -> list[str]:
    """The report's word on runs that did not train cleanly: a run that diverged (a
    non-finite loss stopped it) or blew up (rows marked `blown_up`: its mean loss rose far
    above where its stage started, each objective saying how far), with the first step
    that showed it. `cell` escapes a run name for markdown. Empty when every run is clean."""
    lines = []
    for name, rows in runs.items():
        diverged = next((r for r in rows if r.get("diverged")), None)
        blown = next((r for r in rows if r.get("blown_up")), None)
        if diverged is not None:
            lines.append(
                f"- `{cell(name)}` diverged at step {diverged.get('step')}: a non-finite "
                "loss stopped it, so its last row is not a result"
            )
        elif blown is not None:
            lines.append(
                f"- `{cell(name)}` blew up from step {blown.get('step')} on: its training loss "
                "rose far above its start, so its numbers describe a diverging run"
            )
    return ["Training stability:", "", *lines, ""] if lines else []
