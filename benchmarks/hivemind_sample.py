"""Sample every generator of specs/hivemind.exp for each of its runs, filling the answer cache.

This is the generated pipeline (generated/hivemind/train.py) up to, not including, the
embedding: the same prompts, generators, decoding settings and cache files. Run it where
sampling is fast (a GPU), then `expc run specs/hivemind.exp` finds every answer cached and
only embeds and analyses. Prints the sampling time of each (run, generator).

    python benchmarks/hivemind_sample.py --device cuda --out runs
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from generated.hivemind import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path("runs"))
    args = parser.parse_args()
    cache_dir = args.out / "hivemind" / "cache"
    for name, run in train.RUNS.items():
        prompts = train.load_prompts(run.data)
        settings = train.sampling(run)
        for generator in train.make_generators(run, cache_dir, args.device):
            started = time.perf_counter()
            responses = generator.generate(prompts, settings)
            seconds = time.perf_counter() - started
            new_bytes = sum(len(r.text.encode("utf-8", errors="replace")) for r in responses)
            print(
                f"{name} {generator.name}: {len(responses)} answers to {len(prompts)} prompts "
                f"in {seconds:.1f} s ({new_bytes / seconds:,.0f} bytes/s), {generator.stats}"
            )


if __name__ == "__main__":
    main()
