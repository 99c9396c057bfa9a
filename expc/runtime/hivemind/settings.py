"""Decoding settings: the paper's two, and their canonical form for cache keys."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from expc.runtime.errors import RunError


@dataclass(frozen=True)
class SamplingSettings:
    """How each (model, prompt) is sampled.

    Defaults are the Artificial Hivemind paper's main setting (App. C.1): 50 samples,
    top-p 0.9, temperature 1.0. `max_tokens` is ours: the paper allows 2048, our byte-level
    LMs get far fewer. `min_p` 0 means off. `seed` None leaves sampling unseeded.
    """

    n: int = 50
    temperature: float = 1.0
    top_p: float = 0.9
    min_p: float = 0.0
    max_tokens: int = 256
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.n < 1:
            raise RunError(f"n must be >= 1, got {self.n}")
        if self.temperature < 0:
            raise RunError(f"temperature must be >= 0, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise RunError(f"top_p must be in (0, 1], got {self.top_p}")
        if not 0.0 <= self.min_p <= 1.0:
            raise RunError(f"min_p must be in [0, 1], got {self.min_p}")
        if self.max_tokens < 1:
            raise RunError(f"max_tokens must be >= 1, got {self.max_tokens}")

    def decoding(self) -> dict[str, Any]:
        """The fields that change what one sample looks like (not n: that is how many)."""
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "min_p": self.min_p,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
        }

    def replace(self, **changes: Any) -> SamplingSettings:
        return dataclasses.replace(self, **changes)


# The paper's main decoding: top-p 0.9, temperature 1.0, 50 samples.
PAPER_DEFAULT = SamplingSettings()
# The paper's diversity-oriented decoding: min-p 0.1, top-p 1.0, temperature 2.0.
PAPER_DIVERSE = SamplingSettings(temperature=2.0, top_p=1.0, min_p=0.1)
PRESETS = {"default": PAPER_DEFAULT, "diverse": PAPER_DIVERSE}
