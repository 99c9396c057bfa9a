"""Sentences per second of the hivemind embedder (all-MiniLM-L6-v2, sentence-transformers).

Encodes, with no cache, (a) short English sentences (the built-in prompts) and (b) the
answers of a hivemind run (responses.jsonl), at a few batch sizes, and prints the best of
`--repeats` timings for each. The model is loaded once and warmed up first.

    python benchmarks/embed_throughput.py runs/hivemind/top_p/responses.jsonl --threads 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from expc.runtime.hivemind import BUILTIN_PROMPTS, Embedder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("responses", type=Path, nargs="?")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--count", type=int, default=512, help="texts per timing")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-sizes", default="32,64,128")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    embedder = Embedder()
    sets = {"prompts": [p.text for p in BUILTIN_PROMPTS]}
    if args.responses:
        lines = args.responses.read_text().splitlines()
        sets["responses"] = [json.loads(line)["response"] for line in lines]
    embedder.model.encode(sets["prompts"][:8])  # warm-up
    print(f"torch threads: {torch.get_num_threads()}")
    for name, texts in sets.items():
        texts = (texts * (args.count // len(texts) + 1))[: args.count]
        mean_chars = sum(map(len, texts)) / len(texts)
        for batch in map(int, args.batch_sizes.split(",")):
            best = float("inf")
            for _ in range(args.repeats):
                started = time.perf_counter()
                embedder.model.encode(texts, batch_size=batch, normalize_embeddings=True)
                best = min(best, time.perf_counter() - started)
            print(
                f"{name} ({len(texts)} texts, {mean_chars:.0f} chars on average), "
                f"batch {batch}: {len(texts) / best:.1f} sentences/s"
            )


if __name__ == "__main__":
    main()
