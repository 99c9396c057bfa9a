"""`expc serve` on loopback, and the generators that sample expc LMs: real servers, no mocks."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import ROOT, run_cli
from hivemind_helpers import MODEL, Server, trained_run  # noqa: F401 - a fixture

from expc.runtime import RunError
from expc.runtime.hivemind import (
    CheckpointGenerator,
    DiskCache,
    GenerationError,
    LanguageModel,
    OpenAIEndpoint,
    Prompt,
    SamplingSettings,
    chat_prompt,
)
from expc.runtime.hivemind.lm import _decode

PROMPTS = [Prompt(f"q{i}", "advice", f"Question number {i}?") for i in range(4)]
TINY = SamplingSettings(n=4, max_tokens=6, seed=7)


@pytest.fixture(scope="module")
def server(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:  # noqa: F811
    running = Server(trained_run, tmp_path_factory.mktemp("serve") / "server.log")
    yield running
    running.stop()


def _post(server: Server, path: str, **body) -> httpx.Response:
    return httpx.post(server.url + path, json={"model": MODEL, **body}, timeout=60)


def test_models_lists_the_served_checkpoint(server: Server) -> None:
    cards = httpx.get(server.url + "/models").json()["data"]
    assert [c["id"] for c in cards] == [MODEL]
    assert cards[0]["expc"]["step"] == 2 and cards[0]["expc"]["max_context"] == 64


def test_completions_return_n_seeded_samples(server: Server) -> None:
    first = _post(server, "/completions", prompt="Hello", n=3, max_tokens=8, seed=5).json()
    assert first["object"] == "text_completion" and first["model"] == MODEL
    assert [c["index"] for c in first["choices"]] == [0, 1, 2]
    assert all(c["finish_reason"] == "length" for c in first["choices"])
    assert first["usage"] == {"prompt_tokens": 5, "completion_tokens": 24, "total_tokens": 29}
    again = _post(server, "/completions", prompt="Hello", n=3, max_tokens=8, seed=5).json()
    other = _post(server, "/completions", prompt="Hello", n=3, max_tokens=8, seed=6).json()
    texts = [c["text"] for c in first["choices"]]
    assert texts == [c["text"] for c in again["choices"]]
    assert texts != [c["text"] for c in other["choices"]]
    assert len(set(texts)) == 3  # an untrained byte LM at temperature 1: samples differ


def test_greedy_decoding_and_stop_strings(server: Server) -> None:
    def greedy(**stop) -> dict:
        reply = _post(server, "/completions", prompt="The ", max_tokens=12, temperature=0, **stop)
        return reply.json()["choices"][0]

    text = greedy()["text"]
    assert greedy()["text"] == text
    stop = text[3:5]
    choice = greedy(stop=[stop])
    assert choice["finish_reason"] == "stop" and choice["text"] == text[: text.find(stop)]


def test_chat_is_a_completion_of_the_joined_messages(server: Server) -> None:
    messages = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"}]
    chat = _post(server, "/chat/completions", messages=messages, max_tokens=10, temperature=0)
    body = chat.json()
    assert body["object"] == "chat.completion"
    message = body["choices"][0]["message"]
    assert message["role"] == "assistant"
    plain = _post(
        server, "/completions", prompt=chat_prompt(messages), max_tokens=10, temperature=0
    )
    assert message["content"] == plain.json()["choices"][0]["text"]
    assert chat_prompt(messages) == "Be kind.\n\nHi\n\n"


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"model": "gpt-4o", "prompt": "x"}, 404, "model"),
        ({"prompt": "x", "top_p": 1.5}, 400, "top_p"),
        ({"prompt": "x", "max_tokens": 64}, 400, "max_tokens"),
        ({"prompt": "x", "stream": True}, 400, "stream"),
        ({"n": 2}, 400, "prompt"),
    ],
)
def test_bad_requests_get_openai_style_errors(
    server: Server, body: dict, status: int, param: str
) -> None:
    reply = httpx.post(server.url + "/completions", json={"model": MODEL, **body}, timeout=60)
    assert reply.status_code == status
    error = reply.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert error["message"]


def test_http_generator_batches_samples_and_rereads_its_cache(
    server: Server, tmp_path: Path
) -> None:
    endpoint = OpenAIEndpoint(
        server.url, MODEL, api="completions", cache_path=tmp_path / "c.sqlite",
        samples_per_request=3, concurrency=2, name="tiny",
    )  # fmt: skip
    responses = endpoint.generate(PROMPTS[:2], TINY)
    assert [(r.prompt_id, r.model, r.sample) for r in responses] == [
        (p.id, "tiny", i) for p in PROMPTS[:2] for i in range(4)
    ]
    # Samples 0-2 in one request, sample 3 in a second, for each prompt.
    assert (endpoint.stats.requests, endpoint.stats.fetched, endpoint.stats.cached) == (4, 8, 0)
    again = endpoint.generate(PROMPTS[:2], TINY)
    assert again == responses
    assert (endpoint.stats.requests, endpoint.stats.cached) == (0, 8)
    # Other decoding settings are other questions.
    endpoint.generate(PROMPTS[:1], TINY.replace(temperature=0.5))
    assert (endpoint.stats.cached, endpoint.stats.fetched) == (0, 4)


def test_http_generator_chat_api(server: Server, tmp_path: Path) -> None:
    endpoint = OpenAIEndpoint(server.url, MODEL, cache_path=tmp_path / "c.sqlite")
    responses = endpoint.generate(PROMPTS[:1], TINY.replace(n=2))
    assert len(responses) == 2 and endpoint.stats.requests == 2  # chat, one sample a request


def test_a_client_error_is_not_retried(server: Server, tmp_path: Path) -> None:
    endpoint = OpenAIEndpoint(server.url, "no-such-model", cache_path=tmp_path / "c.sqlite")
    with pytest.raises(GenerationError, match="HTTP 404"):
        endpoint.generate(PROMPTS[:1], TINY.replace(n=1))
    assert (endpoint.stats.requests, endpoint.stats.retries) == (1, 0)


@pytest.mark.slow  # two server processes start: ~15 s on 2 cores
def test_killed_server_then_resume_asks_only_for_the_missing_answers(
    trained_run: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    cache = tmp_path / "answers.sqlite"
    first = Server(trained_run, tmp_path / "first.log")

    def kill_after_five(done: int, total: int) -> None:
        if done == 5:
            first.kill()

    endpoint = OpenAIEndpoint(
        first.url, MODEL, api="completions", cache_path=cache, concurrency=2, max_retries=2,
        backoff_s=0.05, backoff_max_s=0.2, timeout_s=30, on_answer=kill_after_five,
    )  # fmt: skip
    try:
        with pytest.raises(GenerationError, match=r"answers are cached .* run again"):
            endpoint.generate(PROMPTS, TINY)
    finally:
        first.stop()
    assert endpoint.stats.retries > 0  # it did try again before giving up
    kept = endpoint.stats.fetched
    assert 5 <= kept < 16
    with DiskCache(cache, table="answers") as stored:
        assert len(stored) == kept

    second = Server(trained_run, tmp_path / "second.log")  # a new process on a new port
    try:
        resumed = OpenAIEndpoint(first.url, MODEL, api="completions", cache_path=cache)
        resumed.base_url = second.url
        responses = resumed.generate(PROMPTS, TINY)
        assert (resumed.stats.cached, resumed.stats.fetched) == (kept, 16 - kept)
        assert second.posts("/completions") == 16 - kept  # the server saw only the rest
        # With a seed, an interrupted-and-resumed run equals one uninterrupted run.
        fresh = OpenAIEndpoint(second.url, MODEL, api="completions", cache_path=tmp_path / "f")
        assert fresh.generate(PROMPTS, TINY) == responses
    finally:
        second.stop()


def test_checkpoint_generator_samples_in_process_reproducibly(
    trained_run: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    generator = CheckpointGenerator(trained_run, cache_path=tmp_path / "s.sqlite", max_context=64)
    responses = generator.generate(PROMPTS[:2], TINY)
    assert [(r.model, r.prompt_id, r.sample) for r in responses] == [
        (MODEL, p.id, i) for p in PROMPTS[:2] for i in range(4)
    ]
    assert generator.stats == {"cached": 0, "sampled": 2}
    # A prompt's samples depend on its seed only, not on the other prompts in the set.
    alone = CheckpointGenerator(trained_run, max_context=64).generate(PROMPTS[1:2], TINY)
    assert alone == responses[4:]
    assert generator.generate(PROMPTS[:2], TINY) == responses
    assert generator.stats == {"cached": 2, "sampled": 0}


def test_decode_cuts_at_the_first_stop_string() -> None:
    assert _decode(b"hello world", ["o w", "ld"]).text == "hell"
    assert _decode(b"hello world", ["o w"]).finish_reason == "stop"
    assert _decode(b"hi\xff", []).text == "hi\ufffd"  # invalid UTF-8 is replaced, not fatal


def test_missing_checkpoint_and_package_are_clear_errors(tmp_path: Path, trained_run: Path) -> None:  # noqa: F811
    with pytest.raises(RunError, match="no checkpoint"):
        LanguageModel(tmp_path)
    # The package is the one spec.json of the experiment folder records (the repository's
    # generated/gated_attention here), whatever --generated says.
    assert LanguageModel(trained_run, generated=tmp_path).name == MODEL
    # Without spec.json, --generated holds it, named by the folder up to its '@'.
    copy = tmp_path / "runs" / "gated_attention@smoke" / "gated"
    shutil.copytree(trained_run, copy)
    with pytest.raises(RunError, match=r"no generated package '.*gated_attention' for exp"):
        LanguageModel(copy, generated=tmp_path)
    # A recorded package that is gone: the same fallback.
    spec_json = {"experiment": "gated_attention", "package": str(tmp_path / "gone")}
    (copy.parent / "spec.json").write_text(json.dumps(spec_json))
    with pytest.raises(RunError, match=r"no generated package '.*gated_attention' for exp"):
        LanguageModel(copy, generated=tmp_path)
    assert LanguageModel(copy, generated=ROOT / "generated").name == MODEL
    result = run_cli("serve", str(tmp_path / "nothing"))
    assert result.exit_code == 1 and "no checkpoint" in result.output
    assert json.loads((trained_run / "config.json").read_text())["name"] == "gated"
