"""A pretrained language model from a GGUF file, read by transformers, ready to sample text.

`transformers` reads a GGUF file (any architecture it supports: llama, gemma3, qwen2, ...)
into a PyTorch model and its tokenizer, dequantising the weights to fp32; this needs the
`gguf` package. The hub is switched off first, so loading never touches the network.

Sampling is our own loop rather than `model.generate`, for two reasons measured in the
README: all n samples of a prompt share one prefill (the prompt's KV cache is computed once
and repeated), and a sample that has stopped leaves the batch, so no step is spent on it.
Both keep the result exact; top-p and min-p are the filters of `expc.runtime.sampling`.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from expc.runtime.errors import RunError
from expc.runtime.hivemind.lm import Completion, cut_at_stop
from expc.runtime.offline import hub_offline
from expc.runtime.pretrained.registry import REGISTRY, file_digest, model_file, unknown_name
from expc.runtime.sampling import Cancelled, next_tokens
from expc.safe_read import check_regular

PromptFormat = Literal["auto", "chat", "raw"]


@dataclass(frozen=True)
class PretrainedSource:
    """Where a model's weights are, found and checked without loading them: the GGUF file,
    its sha256 (what cache keys use) and the model's name in reports and the API."""

    path: Path
    digest: str
    name: str

    @classmethod
    def resolve(cls, source: str | Path, *, name: str | None = None) -> PretrainedSource:
        """A registry name or a path to a .gguf file."""
        text = str(source)
        if text in REGISTRY:  # model_file checks the file's digest
            return cls(model_file(text), REGISTRY[text].sha256, name or text)
        path = Path(text)
        if path.suffix != ".gguf":
            raise RunError(unknown_name(text))
        if not path.is_file():
            raise RunError(f"no GGUF file at {text!r}")
        try:  # not a device, a pipe or a file without end (the digest reads all of it)
            check_regular(path, MAX_GGUF_BYTES, what="GGUF file")
        except OSError as error:
            raise RunError(f"cannot read GGUF file {text!r}: {error}") from None
        return cls(path, file_digest(path), name or path.stem)


# Models loaded in this process, by (sha256, device), most recent last: dequantising a GGUF
# file takes 20-50 s, and the runs of one `expc run` (the hivemind decodings) share a model.
# Sampling never changes a model, so sharing is safe.
_LOADED: OrderedDict[tuple[str, str], tuple[Any, Any]] = OrderedDict()
KEEP_LOADED = 2
# A GGUF file larger than this is not a model to run on one machine (or not a file).
MAX_GGUF_BYTES = 256 << 30


@contextlib.contextmanager
def _quiet_dequantisation() -> Iterator[None]:
    """transformers draws a tqdm bar while it dequantises a GGUF file, which would cut
    through `expc run`'s own progress display; tqdm reads its TQDM_DISABLE setting only when
    first imported, so the bar is switched off where transformers calls it."""
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    bar = gguf_utils.tqdm
    gguf_utils.tqdm = functools.partial(bar, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = bar


class PretrainedLM:
    """A GGUF model in eval mode: `complete` samples n continuations of one prompt.

    format: how `ask` turns a question into the text the model continues: `chat` applies
    the model's chat template (an instruction-tuned model), `raw` gives the text as it is (a
    base model), `auto` chooses chat where the file has a template. `/v1/completions` and
    `complete` always take raw text, as the OpenAI API does.
    """

    def __init__(
        self,
        source: str | Path | PretrainedSource,
        *,
        name: str | None = None,
        device: str = "cpu",
        format: PromptFormat = "auto",
        max_context: int | None = None,
    ) -> None:
        found = source if isinstance(source, PretrainedSource) else None
        found = found or PretrainedSource.resolve(source, name=name)  # type: ignore[arg-type]
        path = self.path = found.path
        self.digest = found.digest
        self.name = name or found.name
        self.device = torch.device(device)
        hub_offline()
        try:
            from transformers import AutoModelForCausalLM, AutoTokenizer
            from transformers.utils import logging as transformers_logging
        except ModuleNotFoundError as error:
            raise RunError(
                f"pretrained models need {error.name}: pip install transformers gguf accelerate"
            ) from None
        transformers_logging.set_verbosity_error()
        transformers_logging.disable_progress_bar()
        key = (self.digest, str(self.device))
        try:
            if key in _LOADED:
                _LOADED.move_to_end(key)
            else:
                with _quiet_dequantisation():
                    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
                    model = AutoModelForCausalLM.from_pretrained(
                        path.parent, gguf_file=path.name, dtype=torch.float32
                    )
                _LOADED[key] = (tokenizer, model.to(self.device).eval())
                while len(_LOADED) > KEEP_LOADED:
                    _LOADED.popitem(last=False)
            self.tokenizer, self.model = _LOADED[key]
        except ModuleNotFoundError as error:  # transformers imports gguf only here
            raise RunError(
                f"reading a GGUF file needs the package {error.name}: pip install gguf accelerate"
            ) from None
        except (ValueError, KeyError, OSError, RuntimeError, TypeError) as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
            raise RunError(f"transformers could not load {path}: {first}") from None
        template = getattr(self.tokenizer, "chat_template", None)
        if format == "chat" and not template:
            raise RunError(f"{self.name} has no chat template in its GGUF file; use format raw")
        self.chat = format == "chat" or (format == "auto" and bool(template))
        self.stop_ids = self._stop_ids()
        self.context = int(getattr(self.model.config, "max_position_embeddings", 2048))
        self.max_context = min(max_context or self.context, self.context)
        self.step = 0  # not trained by expc; `expc serve` prints a step

    def _stop_ids(self) -> list[int]:
        """End of text and, for a chat model, end of turn: the tokens a sample stops at."""
        found: set[int] = set()
        for ids in (self.model.generation_config.eos_token_id, self.tokenizer.eos_token_id):
            if isinstance(ids, int):
                found.add(ids)
            elif ids:
                found.update(int(i) for i in ids)
        for marker in ("<|im_end|>", "<end_of_turn>", "<|eot_id|>"):
            token = self.tokenizer.convert_tokens_to_ids(marker)
            if isinstance(token, int) and token != self.tokenizer.unk_token_id:
                found.add(token)
        return sorted(found)

    # --- text in, tokens out -------------------------------------------------------------

    def chat_text(self, messages: Sequence[dict[str, str]]) -> str:
        """Chat messages as the text the model continues: the chat template with the
        assistant's turn opened, or for a model without one the contents as paragraphs."""
        if not self.chat:
            from expc.runtime.hivemind.lm import chat_prompt

            return chat_prompt(messages)
        from jinja2 import TemplateError

        try:
            return self.tokenizer.apply_chat_template(
                list(messages), add_generation_prompt=True, tokenize=False
            )
        except TemplateError as error:  # a file's own template may refuse some messages
            raise RunError(f"{self.name}'s chat template refused these messages: {error}") from None

    def ask(self, question: str) -> str:
        """A single user question as the text to continue (see `format`)."""
        return self.chat_text([{"role": "user", "content": question}]) if self.chat else question

    def encode(self, text: str) -> list[int]:
        # Chat templates write their own special tokens; raw text gets the tokenizer's
        # (Gemma's BOS, for example).
        ids = self.tokenizer(text, add_special_tokens=not self.chat)["input_ids"]
        return [int(i) for i in ids]

    def count_tokens(self, text: str) -> int:
        return len(self.encode(text))

    # --- sampling ------------------------------------------------------------------------

    @torch.inference_mode()
    def sample(
        self,
        prompt: Sequence[int],
        n: int,
        max_tokens: int,
        *,
        temperature: float = 1.0,
        top_p: float = 1.0,
        min_p: float = 0.0,
        generator: torch.Generator | None = None,
        use_cache: bool = True,
        cancelled: Callable[[], bool] | None = None,
    ) -> list[list[int]]:
        """n samples of at most max_tokens new tokens after `prompt`, each ending at its
        first stop token (kept). Without the cache every step recomputes the whole
        sequence: the reference the cached path is tested against; both draw the same
        random numbers in the same order, so under one generator they give the same tokens.
        """
        if not prompt:
            raise RunError("the prompt has no tokens")
        model = self.model
        ids = torch.tensor([list(prompt)], dtype=torch.long, device=self.device)
        samples: list[list[int]] = [[] for _ in range(n)]
        active = torch.arange(n, device=self.device)  # rows still sampling -> sample index
        stops = torch.tensor(self.stop_ids, dtype=torch.long, device=self.device)
        cache = None
        if use_cache:
            from transformers import DynamicCache

            cache = DynamicCache(config=model.config)
            logits = model(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=1).logits[
                :, -1
            ]
            cache.batch_repeat_interleave(n)  # one prefill for all n samples
        else:
            logits = model(input_ids=ids, use_cache=False, logits_to_keep=1).logits[:, -1]
        logits = logits.expand(n, -1)
        for step in range(max_tokens):
            if cancelled is not None and cancelled():
                raise Cancelled(f"cancelled after {step} of {max_tokens} tokens")
            token = next_tokens(
                logits, temperature=temperature, top_p=top_p, min_p=min_p, generator=generator
            )
            for row, value in zip(active.tolist(), token.tolist(), strict=True):
                samples[row].append(value)
            going = ~torch.isin(token, stops)
            if step + 1 == max_tokens or not bool(going.any()):
                break
            if not bool(going.all()):  # stopped samples leave the batch
                keep = going.nonzero().squeeze(-1)
                active, token = active[keep], token[keep]
                if cache is not None:
                    cache.batch_select_indices(keep)
            if cache is not None:
                logits = model(input_ids=token[:, None], cache=cache, use_cache=True).logits[:, -1]
            else:
                rows = [list(prompt) + samples[row] for row in active.tolist()]
                sequences = torch.tensor(rows, dtype=torch.long, device=self.device)
                logits = model(input_ids=sequences, use_cache=False, logits_to_keep=1).logits[:, -1]
        return samples

    def complete(
        self,
        prompt: str,
        *,
        n: int = 1,
        max_tokens: int = 16,
        temperature: float = 1.0,
        top_p: float = 1.0,
        min_p: float = 0.0,
        stop: Sequence[str] = (),
        seed: int | None = None,
        batch_size: int = 64,
        cancelled: Callable[[], bool] | None = None,
    ) -> list[Completion]:
        """n continuations of `prompt` (raw text: `ask` formats a question first)."""
        tokens = self.encode(prompt) or self.encode("\n")
        if len(tokens) + max_tokens > self.max_context:
            raise RunError(
                f"the prompt ({len(tokens)} tokens) plus max_tokens ({max_tokens}) exceeds "
                f"the context of {self.name} ({self.max_context} tokens)"
            )
        generator = torch.Generator(device=self.device)
        generator.manual_seed(seed if seed is not None else int.from_bytes(os.urandom(8), "little"))
        completions: list[Completion] = []
        for start in range(0, n, batch_size):
            drawn = self.sample(
                tokens,
                min(batch_size, n - start),
                max_tokens,
                temperature=temperature,
                top_p=top_p,
                min_p=min_p,
                generator=generator,
                cancelled=cancelled,
            )
            completions += [self._decode(sample, stop) for sample in drawn]
        return completions

    def _decode(self, sample: list[int], stop: Sequence[str]) -> Completion:
        ended = bool(sample) and sample[-1] in self.stop_ids
        text = self.tokenizer.decode(sample[:-1] if ended else sample, skip_special_tokens=True)
        kept = cut_at_stop(text, stop)
        if kept is not None:
            return Completion(kept, "stop", len(sample))
        return Completion(text, "stop" if ended else "length", len(sample))

    def describe(self) -> dict[str, Any]:
        entry = REGISTRY.get(self.name)
        return {
            "name": self.name,
            "gguf": str(self.path),
            "sha256": self.digest,
            "architecture": self.model.config.model_type,
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "chat_template": self.chat,
            "context": self.context,
            "max_context": self.max_context,
            "licence": entry.licence if entry else None,
        }
