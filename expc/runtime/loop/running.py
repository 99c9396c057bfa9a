"""Training statistics summed between evaluations: the means a metrics row reports."""

from __future__ import annotations

from typing import Any

import torch

from expc.runtime.distributed import World


class Running:
    """Each statistic as it arrives: a Python number is kept in a list and averaged in
    order; a tensor is summed on its device (no host sync per step) and read once at the
    evaluation. `counts` is the number of steps since the last evaluation."""

    def __init__(self) -> None:
        self.values: dict[str, list[float] | torch.Tensor] = {}
        self.count = 0

    def add(self, stats: dict[str, float | torch.Tensor]) -> None:
        self.count += 1
        for name, value in stats.items():
            if isinstance(value, torch.Tensor):
                total = self.values.get(name)
                self.values[name] = value if total is None else total + value
            else:
                self.values.setdefault(name, []).append(value)  # type: ignore[union-attr]

    def means(self, world: World | None = None) -> dict[str, float]:
        """Each statistic's mean since the last evaluation; under DDP a summed tensor is
        averaged over the ranks too (every rank must call this)."""
        means: dict[str, float] = {}
        for name, value in self.values.items():
            if isinstance(value, torch.Tensor):
                total = world.mean(value) if world is not None else value.item()
                means[name] = total / self.count
            else:
                means[name] = sum(value) / len(value)
        return means

    def clear(self) -> None:
        self.values, self.count = {}, 0

    def state_dict(self) -> dict[str, Any]:
        return {"values": self.values, "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.values, self.count = dict(state["values"]), state["count"]
