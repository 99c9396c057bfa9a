"""Checkpoints written atomically: a crash mid-write never leaves a torn file."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch


def save_checkpoint(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int, **extra: Any
) -> None:
    """Model, optimiser, step and every RNG state, via a temp file and an atomic rename."""
    path = Path(path)
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": step,
        "rng": {
            "torch": torch.get_rng_state(),
            "numpy": np.random.get_state(),
            "python": random.getstate(),
        },
        **extra,
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
