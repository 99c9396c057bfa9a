"""benchmarks/crl_flops.py counts the critic step's FLOPs analytically; check the count
against PyTorch's own FLOP counter on a real forward + backward."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.crl_flops import critic_step, dense_shapes, step_flops
from generated.crl_depth.model import ModelConfig


def test_dense_shapes_follow_the_depth() -> None:
    shapes = dense_shapes(ModelConfig(depth=8, width=32, representation=16), fan_in=6)
    assert shapes == [(6, 32)] + [(32, 32)] * 8 + [(32, 16)]


def test_analytic_flops_equal_pytorchs_count() -> None:
    config = ModelConfig(depth=8, width=32)
    step = critic_step(config, batch=16, device=torch.device("cpu"))
    with FlopCounterMode(display=False) as counter:
        step()
    # PyTorch counts matmuls (addmm/mm) forward and backward, as the benchmark does.
    assert counter.get_total_flops() == step_flops(config, 16)
