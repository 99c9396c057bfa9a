"""Pretrained language models, offline: a registry of models that ship in PyPI packages, and
GGUF files read by transformers, sampled with a batched KV-cache loop.

    lm = PretrainedLM("smollm2-135m-instruct")
    answers = lm.complete(lm.ask("Write a metaphor about time."), n=4, max_tokens=64, top_p=0.9)

torch and transformers are imported only when a model is made.
"""

from expc.runtime.pretrained.registry import REGISTRY, PretrainedEntry, model_file, unknown_name

__all__ = ["REGISTRY", "PretrainedEntry", "PretrainedLM", "model_file", "unknown_name"]


def __getattr__(name: str):  # PretrainedLM imports torch: only when asked for
    if name == "PretrainedLM":
        from expc.runtime.pretrained.model import PretrainedLM

        return PretrainedLM
    raise AttributeError(name)
