"""Tokens per second of expc's pretrained-model sampler against transformers' `generate`.

Same model, same process, same batch: n samples of one built-in prompt (through the chat
template for a chat model), up to --max-tokens new tokens, at one of the paper's decodings.
The two are timed alternately, --repeats times each, and the ratio of the medians is
printed. Tokens counted are the new tokens each sample really has (up to and including its
stop token), not the padding `generate` writes after a row has stopped.

    python benchmarks/pretrained_sampling.py --model smollm2-135m-instruct --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from expc.runtime.hivemind import BUILTIN_PROMPTS
from expc.runtime.pretrained.model import PretrainedLM

DECODINGS = {
    "top_p": {"temperature": 1.0, "top_p": 0.9},
    "min_p": {"temperature": 2.0, "top_p": 1.0, "min_p": 0.1},
}


def ours(lm: PretrainedLM, prompt: list[int], n: int, max_tokens: int, decoding: dict) -> int:
    samples = lm.sample(
        prompt, n, max_tokens, generator=torch.Generator().manual_seed(0), **decoding
    )
    return sum(len(s) for s in samples)


@torch.inference_mode()
def theirs(lm: PretrainedLM, prompt: list[int], n: int, max_tokens: int, decoding: dict) -> int:
    batch = torch.tensor([prompt] * n)
    torch.manual_seed(0)
    out = lm.model.generate(
        batch,
        attention_mask=torch.ones_like(batch),
        do_sample=True,
        top_k=0,  # generate's default top-k 50 would be a third filter
        max_new_tokens=max_tokens,
        eos_token_id=lm.stop_ids,
        pad_token_id=lm.stop_ids[0],
        **decoding,
    )
    new = out[:, len(prompt) :]
    counted = 0
    stops = torch.tensor(lm.stop_ids)
    for row in new:
        stopped = torch.isin(row, stops).nonzero()
        counted += int(stopped[0]) + 1 if len(stopped) else len(row)
    return counted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=2, help="built-in prompts, one a repeat")
    parser.add_argument("--decodings", default="top_p,min_p")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    lm = PretrainedLM(args.model)
    print(f"{args.model}: loaded in {time.perf_counter() - started:.1f} s; torch threads "
          f"{torch.get_num_threads()}; n {args.n}, max_tokens {args.max_tokens}")  # fmt: skip
    for decoding in args.decodings.split(","):
        rates: dict[str, list[float]] = {"expc": [], "generate": []}
        for repeat in range(args.repeats):
            question = BUILTIN_PROMPTS[(repeat % args.prompts) * 7].text
            prompt = lm.encode(lm.ask(question))
            pair = [("expc", ours), ("generate", theirs)]
            for name, sampler in pair if repeat % 2 == 0 else pair[::-1]:
                start = time.perf_counter()
                tokens = sampler(lm, prompt, args.n, args.max_tokens, DECODINGS[decoding])
                rates[name].append(tokens / (time.perf_counter() - start))
        expc, generate = (statistics.median(rates[k]) for k in ("expc", "generate"))
        print(
            f"{decoding}: expc {expc:.1f} tokens/s, generate {generate:.1f} tokens/s, "
            f"ratio {expc / generate:.2f} (medians of {args.repeats}; "
            f"expc {[round(r, 1) for r in rates['expc']]}, "
            f"generate {[round(r, 1) for r in rates['generate']]})"
        )


if __name__ == "__main__":
    main()
