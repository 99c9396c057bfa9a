"""Seeds and threads: what a run needs, beyond its config's numbers, to train the same way
in any process that runs it.

A run's torch thread count is part of its config (`target.threads`): reductions over a
batch sum in another order at another thread count, so the count must not follow the
machine or the launcher. `0` (a spec that leaves `threads` out) means DEFAULT_THREADS, on
every machine and under every launcher; `resolve_threads` writes it into the run before it
trains, so its config.json records the count used. (Importing this module imports no torch: the
runner and the launchers read DEFAULT_THREADS before any run is placed.)
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

# One thread per run unless the spec says otherwise. Parallel placements (`--jobs`, Ray
# tasks, torchrun ranks) then fill a machine's cores one run per core instead of
# oversubscribing them: on a 2-core machine two processes of 2 threads each took 3.3x the
# wall time of two of 1 thread (README, "Running at scale").
DEFAULT_THREADS = 1


def run_threads(threads: int) -> int:
    """The torch threads a run with `target.threads = threads` trains with."""
    return threads if threads > 0 else DEFAULT_THREADS


def resolve_threads(run: Any) -> Any:
    """A generated Run with `target.threads` resolved (0: DEFAULT_THREADS), so that what
    its config.json records is the count it trains with; a Run without it is returned as
    it is."""
    target = getattr(run, "target", None)
    threads = getattr(target, "threads", None)
    if not isinstance(threads, int) or threads > 0:
        return run
    resolved = dataclasses.replace(target, threads=run_threads(threads))  # type: ignore[type-var]
    return dataclasses.replace(run, target=resolved)


def use_threads(threads: int) -> None:
    """Train this process's runs with the threads `target.threads = threads` asks for."""
    import torch

    count = run_threads(threads)
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)


def configure_torch(seed: int, threads: int = 0) -> None:
    """Seed every generator a run touches; set the thread count the run's config names."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    use_threads(threads)
