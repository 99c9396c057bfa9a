"""Where responses come from. Each generator turns (prompts, sampling settings) into responses.

Four kinds, mixed freely in one experiment:
- `CheckpointGenerator`: an LM trained by another expc experiment, sampled in-process;
- `PretrainedGenerator`: a pretrained model from a package or a GGUF file, sampled in-process;
- `JsonlResponses` (responses.py): answers a user already has, in a JSONL file;
- `OpenAIEndpoint` (http_client.py): any OpenAI-compatible server, `expc serve` included.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from expc.runtime.hivemind.cache import DiskCache, cache_key
from expc.runtime.hivemind.http_client import OpenAIEndpoint
from expc.runtime.hivemind.lm import LanguageModel
from expc.runtime.hivemind.prompts import Prompt
from expc.runtime.hivemind.responses import JsonlResponses, Response
from expc.runtime.hivemind.settings import SamplingSettings

__all__ = [
    "CheckpointGenerator",
    "Generator",
    "JsonlResponses",
    "OpenAIEndpoint",
    "PretrainedGenerator",
    "SampledGenerator",
]


class Generator(Protocol):
    name: str

    def generate(self, prompts: Sequence[Prompt], settings: SamplingSettings) -> list[Response]:
        """settings.n responses to each prompt (fewer where a file has fewer)."""
        ...


class SampledGenerator:
    """Samples a language model in this process, prompt by prompt, all n samples together.

    `lm` has `name` and `complete(text, n=..., ...)`; `identity` is what makes its answers
    its own (the weights' digest and how prompts are given), and `ask` turns a question into
    the text the model continues. With `settings.seed` each prompt gets its own seed derived
    from (seed, prompt id), so the answers to one prompt do not depend on which other
    prompts are in the set. With `cache_path`, each prompt's samples are stored once drawn,
    keyed by the identity, the prompt, the decoding settings and n: a rerun skips them.
    """

    def __init__(
        self,
        lm: Any,
        identity: dict[str, Any],
        *,
        batch_size: int = 64,
        cache_path: Path | str | None = None,
        on_prompt: Callable[[int, int], None] | None = None,
    ) -> None:
        self._lm = lm
        self.name = lm.name
        self.identity = identity
        self.batch_size = batch_size
        self.cache_path = Path(cache_path) if cache_path else None
        self.on_prompt = on_prompt
        self.stats = {"cached": 0, "sampled": 0}  # prompts read from the cache / sampled

    @property
    def lm(self) -> Any:
        return self._lm

    def ask(self, question: str) -> str:
        """The text the model continues for a question: the raw question."""
        return question

    def _seed(self, prompt: Prompt, settings: SamplingSettings) -> int | None:
        if settings.seed is None:
            return None
        return int(cache_key({"seed": settings.seed, "prompt": prompt.id})[:15], 16)

    def generate(self, prompts: Sequence[Prompt], settings: SamplingSettings) -> list[Response]:
        cache = DiskCache(self.cache_path, table="samples") if self.cache_path else None
        responses: list[Response] = []
        self.stats = {"cached": 0, "sampled": 0}
        try:
            for done, prompt in enumerate(prompts, start=1):
                key = cache_key(
                    {
                        **self.identity,
                        "prompt": prompt.text,
                        "decoding": settings.decoding(),
                        "n": settings.n,
                    }
                )
                stored = cache.get(key) if cache is not None else None
                if stored is not None:
                    texts = json.loads(stored)
                    self.stats["cached"] += 1
                else:
                    self.stats["sampled"] += 1
                    completions = self.lm.complete(
                        self.ask(prompt.text),
                        n=settings.n,
                        max_tokens=settings.max_tokens,
                        temperature=settings.temperature,
                        top_p=settings.top_p,
                        min_p=settings.min_p,
                        seed=self._seed(prompt, settings),
                        batch_size=self.batch_size,
                    )
                    texts = [c.text for c in completions]
                    if cache is not None:
                        cache.put(key, json.dumps(texts).encode())
                responses += [Response(prompt.id, self.name, i, t) for i, t in enumerate(texts)]
                if self.on_prompt is not None:
                    self.on_prompt(done, len(prompts))
        finally:
            if cache is not None:
                cache.close()
        return responses


class CheckpointGenerator(SampledGenerator):
    """An LM trained by expc (a run folder or checkpoint.pt), given the raw prompt, as
    `expc serve`'s /v1/completions does."""

    def __init__(
        self,
        checkpoint: Path | str,
        *,
        name: str | None = None,
        generated: Path | str = "generated",
        device: str = "cpu",
        max_context: int | None = None,
        batch_size: int = 64,
        cache_path: Path | str | None = None,
        on_prompt: Callable[[int, int], None] | None = None,
    ) -> None:
        lm = LanguageModel(
            checkpoint, generated=generated, device=device, max_context=max_context, name=name
        )
        with open(lm.checkpoint, "rb") as file:
            self.digest = hashlib.file_digest(file, "sha256").hexdigest()
        identity = {"checkpoint": self.digest, "max_context": lm.max_context}
        super().__init__(
            lm, identity, batch_size=batch_size, cache_path=cache_path, on_prompt=on_prompt
        )


class PretrainedGenerator(SampledGenerator):
    """A pretrained model (a registry name or a GGUF file): a chat model is asked through
    its chat template, a base model gets the raw prompt (`format` chooses otherwise). The
    model is loaded only when a prompt's answers are not in the cache."""

    def __init__(
        self,
        source: str | Path,
        *,
        name: str | None = None,
        device: str = "cpu",
        format: str = "auto",
        max_context: int | None = None,
        batch_size: int = 64,
        cache_path: Path | str | None = None,
        on_prompt: Callable[[int, int], None] | None = None,
    ) -> None:
        from expc.runtime.pretrained.model import PretrainedSource

        found = PretrainedSource.resolve(source, name=name)
        self.digest = found.digest
        self._settings = {"device": device, "format": format, "max_context": max_context}
        self._loaded: Any = None
        identity = {"gguf": found.digest, "format": format, "max_context": max_context or 0}
        super().__init__(
            found, identity, batch_size=batch_size, cache_path=cache_path, on_prompt=on_prompt
        )

    @property
    def lm(self) -> Any:
        if self._loaded is None:
            from expc.runtime.pretrained.model import PretrainedLM

            self._loaded = PretrainedLM(self._lm, **self._settings)
        return self._loaded

    def ask(self, question: str) -> str:
        return self.lm.ask(question)
