"""A generator that asks an OpenAI-compatible HTTP endpoint (vLLM, llama.cpp, Ollama, `expc serve`).

Every answer is written to an on-disk cache the moment it arrives, keyed by what was asked:
(endpoint model, API kind, prompt text, decoding settings, sample index). The endpoint's URL
is not part of the key, so a server restarted on another port still hits the cache. A run
that stops half-way (the server died, the user pressed Ctrl-C, the machine rebooted) is
resumed by running it again: cached answers are read, only the missing ones are asked for.

Requests go out `concurrency` at a time with a timeout each. Connection failures,
timeouts, 408/409/429 and 5xx answers are retried with exponential backoff and jitter
(tenacity); any other 4xx is the caller's mistake and stops the run at once. When a request
fails for good, requests not yet sent are cancelled and a `GenerationError` says how many
answers are cached and how many are missing.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from expc.runtime.errors import RunError
from expc.runtime.hivemind.cache import DiskCache, cache_key
from expc.runtime.hivemind.prompts import Prompt
from expc.runtime.hivemind.responses import Response
from expc.runtime.hivemind.settings import SamplingSettings

RETRY_STATUS = frozenset({408, 409, 429})


class GenerationError(RunError):
    """A run that could not get every answer; what it got is in the cache."""


@dataclass
class GenerationStats:
    """What one `generate` call did: answers read from the cache and fetched, requests sent."""

    total: int = 0
    cached: int = 0
    fetched: int = 0
    requests: int = 0
    retries: int = 0
    failures: list[str] = field(default_factory=list)


class _HTTPStatusError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:300]}")
        self.status = status


def _first_leaf(group: BaseExceptionGroup) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


def _retryable(error: BaseException) -> bool:
    if isinstance(error, _HTTPStatusError):
        return error.status in RETRY_STATUS or error.status >= 500
    return isinstance(error, httpx.TransportError)  # connect/read/write errors and timeouts


@dataclass(frozen=True)
class _Job:
    prompt: Prompt
    samples: tuple[int, ...]  # the sample indices this request asks for (n = their count)


class OpenAIEndpoint:
    """Samples `settings.n` answers per prompt from `model` at `base_url` (e.g. .../v1).

    `api` is "chat" (/chat/completions, the prompt as one user message) or "completions"
    (/completions, the raw prompt). `samples_per_request` > 1 asks for several samples in
    one request (`n`); servers that return fewer choices than asked (Ollama returns one)
    are asked again for the rest. With `settings.seed`, request k of a prompt carries
    seed + its first sample index, so a rerun asks the same questions. `min_p` is sent
    only when > 0, as OpenAI's own API rejects it. The API key comes from the environment
    variable named by `api_key_env`, if set.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        cache_path: Path | str,
        api: Literal["chat", "completions"] = "chat",
        name: str | None = None,
        concurrency: int = 4,
        timeout_s: float = 120.0,
        max_retries: int = 5,
        backoff_s: float = 1.0,
        backoff_max_s: float = 60.0,
        samples_per_request: int = 1,
        api_key_env: str | None = None,
        extra_body: dict[str, Any] | None = None,
        on_answer: Callable[[int, int], None] | None = None,
    ) -> None:
        if api not in ("chat", "completions"):
            raise RunError(f"api must be 'chat' or 'completions', got {api!r}")
        if concurrency < 1 or samples_per_request < 1 or max_retries < 0:
            raise RunError("concurrency and samples_per_request must be >= 1, max_retries >= 0")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api = api
        self.name = name or model
        self.cache_path = Path(cache_path)
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.samples_per_request = samples_per_request
        self.api_key_env = api_key_env
        self.extra_body = dict(extra_body or {})
        self.on_answer = on_answer
        self.stats = GenerationStats()

    # -- cache -----------------------------------------------------------------------------

    def key(self, prompt: Prompt, settings: SamplingSettings, sample: int) -> str:
        """The cache key of one answer: everything that decides what it looks like."""
        return cache_key(
            {
                "model": self.model,
                "api": self.api,
                "prompt": prompt.text,
                "decoding": settings.decoding(),
                "extra": self.extra_body,
                "sample": sample,
            }
        )

    # -- requests --------------------------------------------------------------------------

    def _body(self, prompt: Prompt, settings: SamplingSettings, samples: tuple[int, ...]) -> dict:
        body: dict[str, Any] = {
            "model": self.model,
            "n": len(samples),
            "temperature": settings.temperature,
            "top_p": settings.top_p,
            "max_tokens": settings.max_tokens,
        }
        if self.api == "chat":
            body["messages"] = [{"role": "user", "content": prompt.text}]
        else:
            body["prompt"] = prompt.text
        if settings.min_p > 0:
            body["min_p"] = settings.min_p
        if settings.seed is not None:
            body["seed"] = settings.seed + samples[0]
        return body | self.extra_body

    def _texts(self, payload: Any) -> list[str]:
        try:
            choices = sorted(payload["choices"], key=lambda c: c.get("index", 0))
            if self.api == "chat":
                return [c["message"]["content"] or "" for c in choices]
            return [c["text"] for c in choices]
        except (KeyError, TypeError, AttributeError) as error:
            raise RunError(f"{self.base_url}: not an OpenAI-style answer ({error!r})") from None

    async def _post(self, client: httpx.AsyncClient, body: dict) -> list[str]:
        path = "/chat/completions" if self.api == "chat" else "/completions"
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=wait_exponential_jitter(
                multiplier=self.backoff_s, max=self.backoff_max_s, jitter=self.backoff_s
            ),
            retry=retry_if_exception(_retryable),
            reraise=True,
        ):
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    self.stats.retries += 1
                self.stats.requests += 1
                reply = await client.post(self.base_url + path, json=body)
                if reply.status_code != 200:
                    raise _HTTPStatusError(reply.status_code, reply.text)
                return self._texts(reply.json())
        raise AssertionError("unreachable: tenacity reraises the last error")

    async def _run(
        self, jobs: list[_Job], settings: SamplingSettings, cache: DiskCache, done: list[int]
    ) -> None:
        headers = {}
        if self.api_key_env and os.environ.get(self.api_key_env):
            headers["Authorization"] = f"Bearer {os.environ[self.api_key_env]}"
        limits = httpx.Limits(max_connections=self.concurrency)
        gate = asyncio.Semaphore(self.concurrency)

        async def one(job: _Job, client: httpx.AsyncClient) -> None:
            remaining = list(job.samples)
            while remaining:  # a server may return fewer choices than `n`: ask again
                body = self._body(job.prompt, settings, tuple(remaining))
                async with gate:
                    texts = await self._post(client, body)
                if not texts:
                    raise RunError(f"{self.base_url}: an answer with no choices")
                got = list(zip(remaining, texts, strict=False))
                cache.put_many(
                    {
                        self.key(job.prompt, settings, sample): json.dumps({"text": text}).encode()
                        for sample, text in got
                    }
                )
                remaining = remaining[len(got) :]
                self.stats.fetched += len(got)
                done[0] += len(got)
                if self.on_answer is not None:
                    self.on_answer(done[0], self.stats.total)

        timeout = httpx.Timeout(self.timeout_s)
        async with httpx.AsyncClient(timeout=timeout, limits=limits, headers=headers) as client:
            async with asyncio.TaskGroup() as tasks:  # the first lasting failure cancels the rest
                for job in jobs:
                    tasks.create_task(one(job, client))

    # -- the generator ---------------------------------------------------------------------

    def generate(self, prompts: Sequence[Prompt], settings: SamplingSettings) -> list[Response]:
        """`settings.n` answers to each prompt, from the cache where there, else the endpoint."""
        self.stats = GenerationStats(total=len(prompts) * settings.n)
        with DiskCache(self.cache_path, table="answers") as cache:
            keys = {(p.id, i): self.key(p, settings, i) for p in prompts for i in range(settings.n)}
            stored = cache.get_many(list(keys.values()))
            self.stats.cached = len(stored)
            jobs: list[_Job] = []
            for prompt in prompts:
                missing = [i for i in range(settings.n) if keys[(prompt.id, i)] not in stored]
                size = self.samples_per_request
                for start in range(0, len(missing), size):
                    jobs.append(_Job(prompt, tuple(missing[start : start + size])))
            done = [self.stats.cached]
            if jobs:
                try:
                    asyncio.run(self._run(jobs, settings, cache, done))
                except ExceptionGroup as group:
                    first = _first_leaf(group)
                    if not isinstance(first, httpx.HTTPError | _HTTPStatusError | RunError):
                        raise first from None
                    have = len(cache.get_many(list(keys.values())))
                    raise GenerationError(
                        f"{self.name}: {first or type(first).__name__} ({self.base_url}); "
                        f"{have} of {len(keys)} answers are cached in {self.cache_path}: run "
                        "again to ask for the rest"
                    ) from None
            stored = cache.get_many(list(keys.values()))
        return [
            Response(p.id, self.name, i, json.loads(stored[keys[(p.id, i)]])["text"])
            for p in prompts
            for i in range(settings.n)
        ]
