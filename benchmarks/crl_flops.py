"""Achieved GFLOP/s of the CRL critic's training step against the machine's fp32 matmul peak.

The critic of `specs/crl_depth.exp` (the generated `Critic`: phi(s, a) and psi(g), each a
residual MLP) takes full training steps: forward through both encoders, the B x B energy
matrix, InfoNCE + logsumexp penalty, backward, fused Adam (as the generated train.py).
FLOPs are counted analytically from the Dense layers alone (2 * B * fan_in * fan_out per
matmul):

    forward   every Dense layer of both encoders
    backward  the weight gradient of every layer, and the input gradient of every layer but
              each encoder's first (its input needs no gradient)

Norms, activations, the energy matrix and Adam are real work but are not counted, so the
figure is the useful matmul throughput. The peak is the best of several large square fp32
matmuls (torch.mm) on the same device and thread count, measured before and after the
critic, in the same process.

    .venv/bin/python benchmarks/crl_flops.py                       # CPU, 1 thread
    .venv/bin/python benchmarks/crl_flops.py --device cuda --threads 0 --configs 256x512,1024x4096
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from expc.runtime import crl  # noqa: E402
from generated.crl_depth.model import Critic, ModelConfig  # noqa: E402

OBS_DIM, ACTION_DIM, GOAL_DIM = 4, 2, 2  # the point-mass mazes


def dense_shapes(config: ModelConfig, fan_in: int) -> list[tuple[int, int]]:
    """(fan_in, fan_out) of every Dense layer of one encoder, input layer first."""
    blocks = config.depth // config.block_layers
    inner = [(config.width, config.width)] * (blocks * config.block_layers)
    return [(fan_in, config.width), *inner, (config.width, config.representation)]


def step_flops(config: ModelConfig, batch: int) -> int:
    """Matmul FLOPs of one critic training step (forward + backward), see the docstring."""
    total = 0
    for fan_in in (OBS_DIM + ACTION_DIM, GOAL_DIM):
        shapes = dense_shapes(config, fan_in)
        per_layer = [2 * batch * i * o for i, o in shapes]
        total += sum(per_layer)  # forward
        total += sum(per_layer)  # weight gradients
        total += sum(per_layer[1:])  # input gradients, not for the raw input
    return total


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_time(fn: Callable[[], object], device: torch.device, repeats: int, inner: int) -> float:
    """Seconds per call: the fastest of `repeats` blocks of `inner` calls (after a warm-up)."""
    fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        synchronize(device)
        times.append((time.perf_counter() - start) / inner)
    return min(times)


def peak_gflops(device: torch.device, size: int, repeats: int) -> float:
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    seconds = best_time(lambda: torch.mm(a, b), device, repeats, inner=3)
    return 2 * size**3 / seconds / 1e9


def critic_step(config: ModelConfig, batch: int, device: torch.device) -> Callable[[], None]:
    torch.manual_seed(0)
    critic = Critic(OBS_DIM, ACTION_DIM, GOAL_DIM, config).to(device)
    optimizer = torch.optim.Adam(critic.parameters(), lr=3e-4, fused=True)  # as train.py
    obs = torch.randn(batch, OBS_DIM, device=device)
    action = torch.rand(batch, ACTION_DIM, device=device) * 2 - 1
    goal = torch.randn(batch, GOAL_DIM, device=device)

    def step() -> None:
        loss, _ = crl.critic_loss(crl.energy(*critic(obs, action, goal)))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=64)
    parser.add_argument(
        "--configs",
        default="64x256,256x256,256x512",
        help="WIDTHxBATCH pairs: 64x256 is the spec's CPU profile, 256x512 the paper's size",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="0 = PyTorch's default")
    parser.add_argument("--peak-size", type=int, default=0, help="0: 2048 on CPU, 8192 on GPU")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":  # true fp32, not TF32, on both sides of the ratio
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        name = torch.cuda.get_device_name(device)
    else:
        name = f"CPU, {torch.get_num_threads()} thread(s)"
    size = args.peak_size or (8192 if device.type == "cuda" else 2048)
    peak_before = peak_gflops(device, size, args.repeats)
    rows = []
    for item in args.configs.split(","):
        width, batch = (int(v) for v in item.split("x"))
        config = ModelConfig(depth=args.depth, width=width)
        flops = step_flops(config, batch)
        inner = max(1, int(2e9 / flops)) if device.type == "cpu" else 10
        seconds = best_time(critic_step(config, batch, device), device, args.repeats, inner)
        rows.append((width, batch, flops, seconds))
    peak = max(peak_before, peak_gflops(device, size, args.repeats))
    print(f"device: {name}; torch {torch.__version__}")
    print(f"peak fp32 matmul ({size} x {size}, best of {args.repeats}): {peak:.1f} GFLOP/s")
    print(f"critic training step at depth {args.depth} (2 encoders, fused Adam):")
    print("| width | batch | GFLOP/step | ms/step | GFLOP/s | % of peak |")
    print("|---|---|---|---|---|---|")
    for width, batch, flops, seconds in rows:
        achieved = flops / seconds / 1e9
        print(
            f"| {width} | {batch} | {flops / 1e9:.2f} | {seconds * 1e3:.1f} | "
            f"{achieved:.1f} | {100 * achieved / peak:.0f}% |"
        )
    print(f"(peak before: {peak_before:.1f}; ratio uses the best of before and after)")


if __name__ == "__main__":
    main()
