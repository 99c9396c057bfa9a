from __future__ import annotations

import random

import numpy as np
import torch


def configure_torch(seed: int, threads: int = 0) -> None:
    """Seed every generator a run touches; pin the thread count when the spec asks."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if threads > 0:
        torch.set_num_threads(threads)
