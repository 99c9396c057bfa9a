"""Counting loss spikes, the Gated Attention paper's training-stability signal."""

from __future__ import annotations

import math
import statistics
from collections import deque


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
