"""Checkpoints written atomically: a crash mid-write never leaves a torn file."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch


def save_checkpoint(path: Path, *, step: int, **parts: Any) -> None:
    """The step, every RNG state, and each named part, via a temp file and an atomic rename.

    A part with a `state_dict()` (a model, each of several optimisers, a gradient scaler) is
    stored as its state dict, anything else (generator states, running sums, the run's
    config) as it is: `model=agent, actor=..., critic=..., buffer=...`. A checkpoint that
    others read (a hivemind generator, `expc serve`, a later stage) names its network
    `model` and the run's config `run`.
    """
    path = Path(path)
    state = {
        name: part.state_dict() if hasattr(part, "state_dict") else part
        for name, part in parts.items()
    }
    state["step"] = step
    state["rng"] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as file:
        torch.save(state, file)
        file.flush()
        os.fsync(file.fileno())  # on disk before the rename makes it the checkpoint
    os.replace(tmp, path)


def restore_rng(state: dict[str, Any]) -> None:
    """Put every global generator back where a checkpoint found it."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def load_checkpoint(path: Path) -> dict[str, Any]:
    # Our own files hold numpy/python RNG state, which weights_only loading rejects.
    return torch.load(Path(path), map_location="cpu", weights_only=False)
