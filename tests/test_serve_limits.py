"""`expc serve` is bounded: body size, prompts and work per request, cancellation when the
client goes away, and every bad request a 4xx in OpenAI's error shape (a real server on
127.0.0.1, started and stopped here)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from hivemind_helpers import MODEL, Server, trained_run  # noqa: F401 - a fixture

LIMITS = ("--max-body-bytes", "20000", "--max-work", "1000000", "--max-prompts", "64")


@pytest.fixture(scope="module")
def server(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:  # noqa: F811
    running = Server(trained_run, tmp_path_factory.mktemp("limits") / "server.log", extra=LIMITS)
    yield running
    running.stop()


def _raw(server: Server, content: bytes, path: str = "/completions") -> httpx.Response:
    headers = {"content-type": "application/json"}
    return httpx.post(server.url + path, content=content, headers=headers, timeout=60)


def _error(reply: httpx.Response, status: int) -> dict:
    assert reply.status_code == status, reply.text[:300]
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    return error


def test_a_seed_beyond_64_bits_is_a_400(server: Server) -> None:
    reply = httpx.post(
        server.url + "/completions",
        json={"model": MODEL, "prompt": "x", "seed": 2**64},
        timeout=60,
    )
    error = _error(reply, 400)
    assert error["param"] == "seed" and "less than or equal to" in error["message"]


def test_an_unpaired_surrogate_is_a_400(server: Server) -> None:
    body = b'{"model": "%s", "prompt": "a\\ud800b"}' % MODEL.encode()
    error = _error(_raw(server, body), 400)
    assert "unpaired surrogate" in error["message"] and error["param"] == "prompt"
    chat = b'{"model": "%s", "messages": [{"role": "user", "content": "\\udfff"}]}' % (
        MODEL.encode()
    )
    assert "unpaired surrogate" in _error(_raw(server, chat, "/chat/completions"), 400)["message"]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'{"model": "m", "prompt": ', "the request body is not valid JSON"),
        (b"", "the request body is empty"),
        (b"[1, 2]", "the request body must be a JSON object"),
        (b'{"model": "m", "prompt": "\xff\xfe"}', "not valid JSON"),
    ],
)
def test_malformed_bodies_get_plain_messages(server: Server, content: bytes, expected: str) -> None:
    error = _error(_raw(server, content), 400)
    assert expected in error["message"]
    assert "None:" not in error["message"] and "JSON decode error" not in error["message"]


def test_an_oversized_body_is_a_413_and_the_server_stays_up(server: Server) -> None:
    body = b'{"model": "m", "prompt": "' + b"x" * 50_000 + b'"}'
    error = _error(_raw(server, body), 413)
    assert "over this server's limit of 20,000 bytes" in error["message"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds for a stream too
        yield b'{"model": "m", "prompt": "'
        for _ in range(10):
            yield b"x" * 5000
        yield b'"}'

    streamed = httpx.post(server.url + "/completions", content=chunks(), timeout=60)
    _error(streamed, 413)
    assert httpx.get(server.url + "/models", timeout=10).status_code == 200


def test_work_per_request_is_capped(server: Server) -> None:
    reply = httpx.post(
        server.url + "/completions",
        json={"model": MODEL, "prompt": ["q"] * 65, "max_tokens": 4},
        timeout=60,
    )
    assert "65 prompts in one request; this server's limit is 64" in _error(reply, 400)["message"]
    reply = httpx.post(
        server.url + "/completions",
        json={"model": MODEL, "prompt": ["q"] * 64, "n": 256, "max_tokens": 63},
        timeout=60,
    )
    error = _error(reply, 400)
    assert "64 prompt(s) x n 256 x max_tokens 63 = 1,032,192 tokens" in error["message"]
    assert "this server's limit is 1,000,000 (`expc serve --max-work`)" in error["message"]
    chat = httpx.post(
        server.url + "/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": "q"}], "n": 2},
        timeout=60,
    )
    assert chat.status_code == 200


def test_a_client_that_disconnects_frees_the_model(server: Server) -> None:
    # 40 prompts x 256 samples x 60 bytes: tens of seconds of sampling, abandoned at once.
    big = {"model": MODEL, "prompt": ["Tell me"] * 40, "n": 256, "max_tokens": 60}
    started = time.monotonic()
    with pytest.raises(httpx.TimeoutException):
        httpx.post(server.url + "/completions", json=big, timeout=1.0)
    small = httpx.post(
        server.url + "/completions",
        json={"model": MODEL, "prompt": "x", "max_tokens": 4},
        timeout=120,
    )
    assert small.status_code == 200
    assert time.monotonic() - started < 15  # not after the abandoned request's whole run
    assert "the client closed the request" not in small.text


def test_fifty_concurrent_requests_are_all_answered(server: Server) -> None:
    def ask(index: int) -> int:
        body = {"model": MODEL, "prompt": f"q{index}", "max_tokens": 4, "n": 2, "seed": index}
        return httpx.post(server.url + "/completions", json=body, timeout=120).status_code

    with ThreadPoolExecutor(max_workers=50) as pool:
        codes = list(pool.map(ask, range(50)))
    assert codes == [200] * 50
