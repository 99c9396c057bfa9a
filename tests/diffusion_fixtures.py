"""A fixture the diffusion tests share (imported by name into their modules)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny convolutions and samplers: a second torch thread only adds synchronisation, and on
    a busy machine makes these tests ~10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
