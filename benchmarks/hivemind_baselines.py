"""Reference points for a hivemind run: is the similarity about the prompt at all?

For each model of a finished run (runs/hivemind/<run>/responses.jsonl) it compares
- same prompt: the run's intra-model similarity (mean pairwise cosine of one prompt's samples);
- other prompts: the same model's samples for *different* prompts, paired the same way;
and adds a corpus baseline: random windows of the LMs' training text (pydoc_data.topics),
as long as the answers, grouped as if they answered the prompts. If a model's same-prompt
similarity is no higher than its other-prompt similarity, its answers ignore the prompt.
Embeddings come from (and go to) the run's embedding cache.

    python benchmarks/hivemind_baselines.py runs/hivemind/top_p
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np

from expc.runtime import read_text_corpus
from expc.runtime.hivemind import Embedder, JsonlResponses, builtin_prompts, group, metrics
from expc.runtime.hivemind.settings import SamplingSettings


def pair_mean(a: np.ndarray, b: np.ndarray) -> float:
    return float(metrics.cosine_matrix(a, b).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    prompts = builtin_prompts()
    responses = JsonlResponses(args.run_dir / "responses.jsonl").generate(
        prompts, SamplingSettings(n=10_000)
    )
    table = group(responses)
    length = round(np.mean([len(r.text.encode()) for r in responses]))
    rng = random.Random(args.seed)
    corpus = read_text_corpus("pydoc_data.topics")
    n = max(len(v) for by_prompt in table.values() for v in by_prompt.values())
    windows = {}
    for prompt in prompts:
        starts = [rng.randrange(len(corpus) - length) for _ in range(n)]
        windows[prompt.id] = [
            corpus[s : s + length].decode("utf-8", errors="replace") for s in starts
        ]
    embedder = Embedder(cache_path=args.run_dir.parent / "cache" / "embeddings.sqlite")
    result = {}
    sources = {
        model: {p: [r.text for r in rs] for p, rs in t.items()} for model, t in table.items()
    }
    sources["pydoc corpus windows"] = windows
    for model, by_prompt in sources.items():
        vectors = {p: embedder.encode(texts) for p, texts in by_prompt.items()}
        ids = sorted(vectors)
        same = np.mean([metrics.intra_similarity(vectors[p]) for p in ids])
        # Each prompt's samples against the next prompt's (cyclically): all cross pairs.
        shifted = ids[1:] + ids[:1]
        other = np.mean(
            [pair_mean(vectors[p], vectors[q]) for p, q in zip(ids, shifted, strict=True)]
        )
        result[model] = {"same_prompt": float(same), "other_prompts": float(other)}
        print(f"{model}: same prompt {same:.3f}, other prompts {other:.3f}")
    embedder.close()
    (args.run_dir / "baselines.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
