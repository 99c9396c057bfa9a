"""Sampling throughput of the generated transformer with and without its KV cache, in one run.

Builds the gated run of specs/gated_attention.exp (the spec's model: depth, width, heads, the
G1 gate), then samples the same batch of prompts with `expc.runtime.sampling.generate`, once
feeding only the newest token to the KV cache and once recomputing the whole prefix at every
step. The two are timed in alternating repetitions, so both see the same machine state; the
script prints the median new tokens per second of each and their ratio.

    .venv/bin/python benchmarks/sampling.py [--batch 16] [--prompt 32] [--new 128] [--device cpu]
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

from expc.runtime.sampling import generate  # noqa: E402
from generated.gated_attention import model as model_module  # noqa: E402
from generated.gated_attention import train as train_module  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", default="gated", choices=sorted(train_module.RUNS))
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--prompt", type=int, default=32, help="prompt length")
    parser.add_argument("--new", type=int, default=128, help="tokens generated per row")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions of each")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    config = train_module.RUNS[args.run].model
    model = model_module.Transformer(config).to(device).eval()
    prompt = torch.randint(0, 256, (args.batch, args.prompt), device=device)

    def sample(use_cache: bool) -> float:
        """Seconds to sample `new` tokens for every row."""
        generator = torch.Generator(device).manual_seed(1)
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        generate(model, prompt, args.new, generator=generator, use_cache=use_cache)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - started

    # The same tokens either way, so both runs do the same amount of work.
    same = torch.equal(
        generate(model, prompt, 16, temperature=0.0, use_cache=True),
        generate(model, prompt, 16, temperature=0.0, use_cache=False),
    )
    times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(args.repeats):
        for use_cache in (True, False):
            times[use_cache].append(sample(use_cache))
    tokens = args.batch * args.new
    rate = {use_cache: tokens / statistics.median(t) for use_cache, t in times.items()}
    print(
        f"model: run {args.run!r} of specs/gated_attention.exp ({config.layers} layers, width "
        f"{config.width}, {config.heads} heads, gate {config.attention_gate}); device "
        f"{args.device}, {args.threads} thread(s)"
    )
    print(
        f"batch {args.batch}, prompt {args.prompt}, {args.new} new tokens per row, "
        f"median of {args.repeats}; greedy tokens identical with and without cache: {same}"
    )
    print(f"with KV cache:    {rate[True]:10.0f} tokens/s")
    print(f"without KV cache: {rate[False]:10.0f} tokens/s")
    print(f"ratio:            {rate[True] / rate[False]:10.2f}x")


if __name__ == "__main__":
    main()
