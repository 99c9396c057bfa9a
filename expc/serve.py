"""`expc serve`: an OpenAI-compatible HTTP server for one language model (FastAPI + uvicorn):
an expc-trained LM or a pretrained model (a registry name or a GGUF file).

Endpoints, as in the OpenAI API (and vLLM, llama.cpp's server, Ollama):

    GET  /v1/models             the one served model
    POST /v1/completions        {"model", "prompt", "n", "max_tokens", "temperature",
                                 "top_p", "min_p", "stop", "seed"}
    POST /v1/chat/completions   the same with "messages" instead of "prompt"

A pretrained chat model answers chat requests through its chat template. expc's LMs are
byte-level base models: a chat request's messages are joined into plain text
(`chat_prompt`), and their token counts in `usage` are bytes. Streaming is not offered.
Errors have OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, with a
plain message; bad input is a 4xx, never a 500.

The server is bounded (`Limits`, set by `expc serve` flags): the request body's size, the
prompts of one request, and its work (prompts × n × max_tokens tokens to sample). Sampling
stops when the client disconnects, so an abandoned request frees the model at once.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, Field
from starlette.exceptions import HTTPException

from expc.runtime.errors import RunError
from expc.runtime.hivemind.lm import Completion
from expc.runtime.sampling import Cancelled

MAX_N = 256
T = TypeVar("T")


class ServedModel(Protocol):
    """What the server needs of a model: `LanguageModel` (expc's LMs) and `PretrainedLM`."""

    name: str
    step: int

    def complete(self, prompt: str, **sampling: Any) -> list[Completion]: ...

    def chat_text(self, messages: list[dict[str, str]]) -> str: ...

    def count_tokens(self, text: str) -> int: ...

    def describe(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Limits:
    """What one request may ask of the server (`expc serve --max-body-bytes ...`)."""

    max_body_bytes: int = 1_000_000
    max_prompts: int = 64
    # prompts × n × max_tokens: the tokens one request samples. The default is, e.g.,
    # 4 prompts × 64 samples × 256 bytes: a few seconds of CPU for expc's small LMs.
    max_work: int = 65_536


def _encodable(text: str) -> str:
    """Text the model can read: an unpaired surrogate (`"\\ud800"` in JSON) has no UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        bad = text[error.start : error.end].encode("unicode_escape").decode()
        raise ValueError(f"contains {bad}, an unpaired surrogate with no UTF-8 form") from None
    return text


Text = Annotated[str, AfterValidator(_encodable)]


class _Sampling(BaseModel):
    """The sampling fields both endpoints share; unknown fields are ignored, as OpenAI does."""

    model: str
    n: int = Field(1, ge=1, le=MAX_N)
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=10.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    min_p: float = Field(0.0, ge=0.0, le=1.0)
    stop: Text | list[Text] | None = None
    seed: int | None = Field(None, ge=0, le=2**63 - 1)  # what torch's generators take
    stream: bool = False


class CompletionRequest(_Sampling):
    prompt: Text | list[Text]


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: Text


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


class _BodyLimit:
    """ASGI middleware: a request body over `limit` bytes gets a 413 before it is parsed,
    whether it declares its length or streams it in chunks."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"0")
        if not declared.isdigit():
            await _send(
                send, _error(400, "Content-Length is not a number", "invalid_request_error")
            )
            return
        if int(declared) > self.limit:
            await _send(send, self._too_large())
            return
        seen, over = 0, False

        async def limited() -> dict:
            # Past the limit the app sees the body end there; what it answers is dropped
            # for the 413 below.
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request" and not over:
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    over = True
                    return {"type": "http.request", "body": b"", "more_body": False}
            return message

        async def unless_over(message: dict) -> None:
            if not over:
                await send(message)

        await self.app(scope, limited, unless_over)
        if over:
            await _send(send, self._too_large())

    def _too_large(self) -> JSONResponse:
        return _error(
            413,
            f"the request body is over this server's limit of {self.limit:,} bytes "
            "(`expc serve --max-body-bytes`)",
            "invalid_request_error",
        )


async def _send(send: Callable, response: JSONResponse) -> None:
    await response({"type": "http"}, _no_body, send)


async def _no_body() -> dict:
    return {"type": "http.disconnect"}


async def _unless_disconnected(request: Request, work: Callable[[Callable[[], bool]], T]) -> T:
    """Run `work(cancelled)` in a thread; `cancelled()` turns true once the client has gone,
    and sampling stops at its next token."""
    gone = threading.Event()
    task = asyncio.ensure_future(asyncio.to_thread(work, gone.is_set))
    while not task.done():
        await asyncio.wait({task}, timeout=0.05)
        if not task.done() and await request.is_disconnected():
            gone.set()
    return task.result()


def _validation_message(error: dict) -> tuple[str, str | None]:
    """A plain message for pydantic's first complaint about a request body."""
    # pydantic's location names the union member and validator too (`prompt.str`,
    # `prompt.function-after[...]`): the client wants the field's path.
    types = {"str", "int", "float", "bool", "list", "dict"}
    loc = [
        str(p)
        for p in error["loc"][1:]
        if isinstance(p, int) or (re.fullmatch(r"[a-z_][a-z0-9_]*", p) and p not in types)
    ]
    param = ".".join(loc) or None
    kind, message = error["type"], error["msg"].removeprefix("Value error, ")
    if kind == "json_invalid":
        where = f" (at character {loc[0]})" if loc and loc[0].isdigit() else ""
        reason = (error.get("ctx") or {}).get("error", "")
        return f"the request body is not valid JSON{where}: {reason}".rstrip(": "), None
    if param is None and kind == "missing":
        return "the request body is empty: send a JSON object", None
    if param is None:
        return f"the request body must be a JSON object ({message.lower()})", None
    return f"`{param}`: {message[0].lower()}{message[1:]}", param


def create_app(
    lm: ServedModel, default_max_tokens: int = 16, limits: Limits | None = None
) -> FastAPI:
    """The ASGI app serving `lm`; `uvicorn.run(create_app(lm))` serves it."""
    limits = limits or Limits()
    app = FastAPI(title=f"expc serve: {lm.name}", docs_url=None, redoc_url=None)
    app.add_middleware(_BodyLimit, limit=limits.max_body_bytes)
    created = int(time.time())
    # One request samples at a time: a batch of n rows already uses every core, and
    # interleaving two batches would only make both slower.
    lock = threading.Lock()

    @app.exception_handler(APIError)
    async def _api_error(_: Request, error: APIError) -> JSONResponse:
        return _error(error.status, error.message, error.kind, error.param)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(error.errors()[0])
        return _error(400, message, "invalid_request_error", param)

    @app.exception_handler(HTTPException)
    async def _http(_: Request, error: HTTPException) -> JSONResponse:
        # Starlette's own errors (an undecodable body, an unknown path, a wrong method).
        detail = error.detail if isinstance(error.detail, str) else "bad request"
        if detail == "There was an error parsing the body":
            detail = "the request body is not valid JSON in UTF-8"
        kind = "invalid_request_error" if error.status_code < 500 else "server_error"
        return _error(error.status_code, detail, kind)

    def check_work(prompts: int, body: _Sampling, max_tokens: int | None) -> None:
        if prompts > limits.max_prompts:
            raise APIError(
                400,
                f"{prompts} prompts in one request; this server's limit is "
                f"{limits.max_prompts} (`expc serve --max-prompts`)",
                "invalid_request_error",
                "prompt",
            )
        work = prompts * body.n * (max_tokens or default_max_tokens)
        if work > limits.max_work:
            raise APIError(
                400,
                f"this request asks for {prompts} prompt(s) x n {body.n} x max_tokens "
                f"{max_tokens or default_max_tokens} = {work:,} tokens; this server's limit "
                f"is {limits.max_work:,} (`expc serve --max-work`)",
                "invalid_request_error",
                "n",
            )

    def sample(
        body: _Sampling, prompt: str, max_tokens: int | None, cancelled: Callable[[], bool]
    ) -> list[Completion]:
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
                    cancelled=cancelled,
                )
        except RunError as error:
            raise APIError(400, str(error), "invalid_request_error", "max_tokens") from None

    def usage(prompt: str, completions: list[Completion]) -> dict[str, int]:
        prompt_tokens = lm.count_tokens(prompt)
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

    # Sampling runs in a worker thread (off the event loop), which watches for the client
    # going away.
    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request) -> Any:
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        if not prompts:
            raise APIError(400, "prompt must not be empty", "invalid_request_error", "prompt")
        check_work(len(prompts), body, body.max_tokens)
        try:
            return await _unless_disconnected(request, lambda gone: complete(body, prompts, gone))
        except Cancelled:
            return _error(499, "the client closed the request", "invalid_request_error")

    def complete(
        body: CompletionRequest, prompts: list[str], cancelled: Callable[[], bool]
    ) -> dict[str, Any]:
        choices, totals = [], {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        for prompt in prompts:  # OpenAI: n choices per prompt, indices running on
            sampled = sample(body, prompt, body.max_tokens, cancelled)
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
    async def chat(body: ChatRequest, request: Request) -> Any:
        max_tokens = body.max_completion_tokens or body.max_tokens
        check_work(1, body, max_tokens)
        try:
            return await _unless_disconnected(request, lambda gone: reply(body, max_tokens, gone))
        except Cancelled:
            return _error(499, "the client closed the request", "invalid_request_error")

    def reply(
        body: ChatRequest, max_tokens: int | None, cancelled: Callable[[], bool]
    ) -> dict[str, Any]:
        # A pretrained chat model gets its chat template; expc's LMs get the paragraphs.
        prompt = lm.chat_text([m.model_dump() for m in body.messages])
        sampled = sample(body, prompt, max_tokens, cancelled)
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
    lm: ServedModel,
    host: str = "127.0.0.1",
    port: int = 8000,
    default_max_tokens: int = 16,
    log_level: str = "info",
    limits: Limits | None = None,
) -> None:
    """Serve `lm` until interrupted (uvicorn logs each request on stdout)."""
    import uvicorn

    app = create_app(lm, default_max_tokens, limits)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
