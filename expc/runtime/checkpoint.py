"""Checkpoints written atomically: a crash mid-write never leaves a torn file."""

from __future__ import annotations

import os
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from expc.runtime.errors import RunError
from expc.safe_read import Unreadable, check_regular

# A checkpoint larger than this is not one this machine wrote (or is not a file).
MAX_CHECKPOINT_BYTES = 256 << 30


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
        name: _own_storage(part.state_dict() if hasattr(part, "state_dict") else part)
        for name, part in parts.items()
    }
    state["step"] = step
    state["rng"] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as file:
            torch.save(state, file)
            file.flush()
            os.fsync(file.fileno())  # on disk before the rename makes it the checkpoint
    except (OSError, RuntimeError) as error:
        # A full disk (or a file-size limit): no torn temp file left filling it, and the
        # previous checkpoint stays as it was. torch reports a failed write as RuntimeError.
        tmp.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise OSError(error.errno, error.strerror, str(tmp)) from None
        raise OSError(
            f"{tmp}: the write stopped short (a full disk, or a file-size limit)"
        ) from None
    os.replace(tmp, path)


def _own_storage(value: Any) -> Any:
    """`value` with every tensor that views a larger storage copied out: torch.save writes
    a view's whole storage, so an ensemble member's weights (slices of the stacked
    parameters, expc/runtime/ensemble.py) would otherwise carry every member's."""
    if isinstance(value, torch.Tensor):
        whole = value.untyped_storage().nbytes()
        return value.clone() if whole > value.numel() * value.element_size() else value
    if isinstance(value, dict):
        copied = type(value)((key, _own_storage(item)) for key, item in value.items())
        if hasattr(value, "_metadata"):  # a module state dict's versions, for loading it
            copied._metadata = value._metadata  # type: ignore[attr-defined]
        return copied
    if isinstance(value, list | tuple) and not hasattr(value, "_fields"):
        return type(value)(_own_storage(item) for item in value)
    return value


def restore_rng(state: dict[str, Any]) -> None:
    """Put every global generator back where a checkpoint found it."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def _numpy_types() -> list[Any]:
    """The numpy objects an expc checkpoint holds (the global RNG state: an array of uint32,
    and scalars): the only globals besides torch's own that loading allows."""
    multiarray = getattr(np, "_core", None) or np.core  # numpy 2, or 1
    dtypes = [type(np.dtype(t)) for t in (np.uint32, np.int64, np.float64, np.float32, np.bool_)]
    return [
        multiarray.multiarray._reconstruct,
        multiarray.multiarray.scalar,
        np.ndarray,
        np.dtype,
        *dtypes,
    ]


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint's contents, loaded with `weights_only=True`: tensors, plain Python data
    and numpy's RNG state only, so a crafted file cannot run code. A file that is not
    such a checkpoint, or is corrupt, is a RunError naming it (the run stops; others go on)."""
    path = Path(path)
    try:
        # A regular file of bounded size: not a pipe or /dev/zero behind a checkpoint's name.
        check_regular(path, MAX_CHECKPOINT_BYTES, what="checkpoint")
        with torch.serialization.safe_globals(_numpy_types()):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise RunError(f"no checkpoint at {path}") from None
    except Unreadable as error:
        raise RunError(f"cannot read checkpoint {path}: {error}") from None
    except pickle.UnpicklingError as error:
        reason = str(error).strip().splitlines()
        detail = next(
            (line for line in reason if "global" in line.lower()), reason[0] if reason else ""
        )
        raise RunError(
            f"{path} is not an expc checkpoint, and was not loaded: it holds objects other than "
            f"tensors and plain data ({detail.strip()[:160]})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, IndexError, KeyError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
        raise RunError(
            f"{path} is corrupt or truncated ({first}): train the run again "
            "(`expc run` without --resume, or with --force)"
        ) from None
    if not isinstance(state, dict):
        raise RunError(f"{path} is not an expc checkpoint (it holds a {type(state).__name__})")
    return state
