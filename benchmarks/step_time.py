"""Training-step time of the generated model: gated vs vanilla, in one process.

Builds both runs of specs/gated_attention.exp at the spec's default profile (batch, context,
width, depth as written), times full optimiser steps (forward, backward, clip, AdamW) in
interleaved blocks so that both see the same machine state, and prints the medians and the
gated/vanilla ratio. The paper reports < 2% wall-time overhead for the gate.

    .venv/bin/python benchmarks/step_time.py [--steps N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from generated.gated_attention import model as model_module  # noqa: E402
from generated.gated_attention import train as train_module  # noqa: E402


def make_step(run):
    torch.manual_seed(0)
    model = model_module.Transformer(run.model)
    optimizer = train_module.make_optimizer(model, run.train)
    tokens = torch.randint(0, 256, (run.train.batch_size, run.data.context + 1))
    x, y = tokens[:, :-1], tokens[:, 1:]

    def step() -> None:
        _, loss = model(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), run.train.grad_clip)
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=60, help="timed steps per variant")
    parser.add_argument("--block", type=int, default=5, help="steps per interleaved block")
    args = parser.parse_args()
    steps = {name: make_step(run) for name, run in train_module.RUNS.items()}
    for step in steps.values():
        for _ in range(3):  # warm up allocator and kernels
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.steps // args.block):
        for name, step in steps.items():
            started = time.perf_counter()
            for _ in range(args.block):
                step()
            times[name].append((time.perf_counter() - started) / args.block)
    run = train_module.RUNS["gated"]
    print(
        f"batch {run.train.batch_size} x context {run.data.context}, "
        f"{run.model.layers} layers x width {run.model.width}, {torch.get_num_threads()} threads"
    )
    for name, values in times.items():
        print(f"{name:8s} median step {statistics.median(values) * 1000:.1f} ms")
    ratio = statistics.median(times["gated"]) / statistics.median(times["vanilla"])
    print(f"gated / vanilla step-time ratio: {ratio:.3f}")


if __name__ == "__main__":
    main()
