"""`expc serve`: an OpenAI-compatible HTTP server for an expc-trained LM (FastAPI + uvicorn).

Endpoints, as in the OpenAI API (and vLLM, llama.cpp's server, Ollama):

    GET  /v1/models             the one served model
    POST /v1/completions        {"model", "prompt", "n", "max_tokens", "temperature",
                                 "top_p", "min_p", "stop", "seed"}
    POST /v1/chat/completions   the same with "messages" instead of "prompt"

expc's LMs are byte-level base models: a chat request's messages are joined into plain
text (`chat_prompt`), and token counts in `usage` are bytes. Streaming is not offered.
Errors have OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from expc.runtime.errors import RunError
from expc.runtime.hivemind.lm import Completion, LanguageModel, chat_prompt

MAX_N = 256


class _Sampling(BaseModel):
    """The sampling fields both endpoints share; unknown fields are ignored, as OpenAI does."""

    model: str
    n: int = Field(1, ge=1, le=MAX_N)
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=10.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    min_p: float = Field(0.0, ge=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False


class CompletionRequest(_Sampling):
    prompt: str | list[str]


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str


class ChatRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)


class APIError(Exception):
    def __init__(self, status: int, message: str, kind: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.param = status, message, kind, param


def _error(status: int, message: str, kind: str, param: str | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": param, "code": None}}
    return JSONResponse(body, status_code=status)


def create_app(lm: LanguageModel, default_max_tokens: int = 16) -> FastAPI:
    """The ASGI app serving `lm`; `uvicorn.run(create_app(lm))` serves it."""
    app = FastAPI(title=f"expc serve: {lm.name}", docs_url=None, redoc_url=None)
    created = int(time.time())
    # One request samples at a time: a batch of n rows already uses every core, and
    # interleaving two batches would only make both slower.
    lock = threading.Lock()

    @app.exception_handler(APIError)
    async def _api_error(_: Request, error: APIError) -> JSONResponse:
        return _error(error.status, error.message, error.kind, error.param)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0]
        param = ".".join(str(p) for p in first["loc"][1:]) or None
        return _error(400, f"{param}: {first['msg']}", "invalid_request_error", param)

    def sample(body: _Sampling, prompt: str, max_tokens: int | None) -> list[Completion]:
        if body.model != lm.name:
            raise APIError(
                404, f"model {body.model!r} does not exist; this server has {lm.name!r}",
                "invalid_request_error", "model",
            )  # fmt: skip
        if body.stream:
            raise APIError(400, "stream=true is not supported", "invalid_request_error", "stream")
        stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
        try:
            with lock:
                return lm.complete(
                    prompt,
                    n=body.n,
                    max_tokens=max_tokens or default_max_tokens,
                    temperature=body.temperature,
                    top_p=body.top_p,
                    min_p=body.min_p,
                    stop=stop,
                    seed=body.seed,
                )
        except RunError as error:
            raise APIError(400, str(error), "invalid_request_error", "max_tokens") from None

    def usage(prompt: str, completions: list[Completion]) -> dict[str, int]:
        prompt_tokens = len(prompt.encode("utf-8"))
        completion_tokens = sum(c.tokens for c in completions)
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        card = {"id": lm.name, "object": "model", "created": created, "owned_by": "expc"}
        return {"object": "list", "data": [card | {"expc": lm.describe()}]}

    # Plain `def` endpoints: FastAPI runs them in a thread pool, off the event loop.
    @app.post("/v1/completions")
    def completions(body: CompletionRequest) -> dict[str, Any]:
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        if not prompts:
            raise APIError(400, "prompt must not be empty", "invalid_request_error", "prompt")
        choices, totals = [], {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        for prompt in prompts:  # OpenAI: n choices per prompt, indices running on
            sampled = sample(body, prompt, body.max_tokens)
            for c in sampled:
                choices.append(
                    {
                        "text": c.text,
                        "index": len(choices),
                        "logprobs": None,
                        "finish_reason": c.finish_reason,
                    }
                )
            for key, value in usage(prompt, sampled).items():
                totals[key] += value
        return {
            "id": f"cmpl-{uuid.uuid4().hex}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": lm.name,
            "choices": choices,
            "usage": totals,
        }

    @app.post("/v1/chat/completions")
    def chat(body: ChatRequest) -> dict[str, Any]:
        prompt = chat_prompt([m.model_dump() for m in body.messages])
        sampled = sample(body, prompt, body.max_completion_tokens or body.max_tokens)
        choices = [
            {
                "index": i,
                "message": {"role": "assistant", "content": c.text},
                "logprobs": None,
                "finish_reason": c.finish_reason,
            }
            for i, c in enumerate(sampled)
        ]
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": lm.name,
            "choices": choices,
            "usage": usage(prompt, sampled),
        }

    return app


def serve(
    lm: LanguageModel,
    host: str = "127.0.0.1",
    port: int = 8000,
    default_max_tokens: int = 16,
    log_level: str = "info",
) -> None:
    """Serve `lm` until interrupted (uvicorn logs each request on stdout)."""
    import uvicorn

    uvicorn.run(create_app(lm, default_max_tokens), host=host, port=port, log_level=log_level)
