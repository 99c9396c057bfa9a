"""Training-step time of the generated model, in one process:

- gated vs vanilla (the paper reports < 2% wall-time overhead for the gate);
- the generated model vs a hand-written PyTorch model of the same architecture
  (benchmarks/handwritten_lm.py): expc must not cost speed.

Builds the runs of specs/gated_attention.exp at the spec's default profile (batch, context,
width, depth as written), times full optimiser steps (forward, backward, clip, AdamW) in
interleaved blocks so that every model sees the same machine state, and prints medians
and ratios.

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

from benchmarks.handwritten_lm import HandwrittenLM  # noqa: E402
from generated.gated_attention import model as model_module  # noqa: E402
from generated.gated_attention import train as train_module  # noqa: E402


def make_step(run, handwritten: bool = False):
    torch.manual_seed(0)
    if handwritten:
        config = run.model
        gated = config.attention_gate != "none"
        model = HandwrittenLM(config.layers, config.width, config.heads, gated, config.rope_base)
    else:
        model = model_module.Transformer(run.model)
    optimizer = train_module.make_optimizer(model, run.train)
    tokens = torch.randint(0, 256, (run.train.batch_size, run.data.context + 1))
    x, y = tokens[:, :-1], tokens[:, 1:]

    def forward() -> torch.Tensor:
        return model(x, y) if handwritten else model(x, y)[1]

    def step() -> None:
        loss = forward()
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
    steps |= {
        f"{name} (hand-written)": make_step(run, handwritten=True)
        for name, run in train_module.RUNS.items()
    }
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
    median = {name: statistics.median(values) for name, values in times.items()}
    for name, value in median.items():
        print(f"{name:24s} median step {value * 1000:.1f} ms")
    print(f"gated / vanilla step-time ratio (generated): {median['gated'] / median['vanilla']:.3f}")
    for name in train_module.RUNS:
        ratio = median[name] / median[f"{name} (hand-written)"]
        print(f"generated / hand-written step-time ratio ({name}): {ratio:.3f}")


if __name__ == "__main__":
    main()
