"""Choosing the device a run trains on."""

from __future__ import annotations

import torch

from expc.runtime.errors import RunError


def resolve_device(target: str, override: str | None = None) -> torch.device:
    """The spec's target device, or the `--device` override; a clear error without a GPU."""
    name = override or target
    if name == "cuda" and not torch.cuda.is_available():
        raise RunError(
            "this spec targets `cuda`, but PyTorch sees no GPU here "
            f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}); "
            "run with `--device cpu` to try the same code path on the CPU"
        )
    if name not in ("cpu", "cuda"):
        raise RunError(f"unknown device {name!r}; use cpu or cuda")
    return torch.device(name)
