"""The JSONL responses generator, the responses file, and the crash-safe cache under them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from expc.runtime import RunError
from expc.runtime.hivemind import (
    PAPER_DEFAULT,
    PAPER_DIVERSE,
    DiskCache,
    JsonlResponses,
    Prompt,
    Response,
    SamplingSettings,
    cache_key,
    group,
    write_responses,
)

CACHE_PY = Path(cache_key.__code__.co_filename)
PROMPTS = [Prompt("p1", "advice", "How do I relax?"), Prompt("p2", "opinion", "Cats or dogs?")]


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_jsonl_rows_one_answer_or_a_list_by_id_or_by_text(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "answers.jsonl",
        [
            {"prompt_id": "p1", "model": "m1", "response": "Breathe."},
            {"prompt_id": "p1", "model": "m1", "response": "Walk."},
            {"prompt": "Cats or dogs?", "model": "m1", "responses": ["Cats.", "Dogs."]},
            {"prompt_id": "p1", "model": "m2", "responses": ["Sleep.", "Read.", "Swim."]},
            {"prompt_id": "other", "model": "m2", "response": "not in this prompt set"},
        ],
    )
    responses = JsonlResponses(path).generate(PROMPTS, SamplingSettings(n=2))
    table = group(responses)
    assert [r.text for r in table["m1"]["p1"]] == ["Breathe.", "Walk."]
    assert [r.text for r in table["m1"]["p2"]] == ["Cats.", "Dogs."]
    assert [(r.sample, r.text) for r in table["m2"]["p1"]] == [(0, "Sleep."), (1, "Read.")]
    assert "p2" not in table["m2"]
    only_m2 = JsonlResponses(path, models=["m2"]).generate(PROMPTS, SamplingSettings(n=50))
    assert {r.model for r in only_m2} == {"m2"} and len(only_m2) == 3


def test_jsonl_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt_id": "p1", "model": "m", "response": "ok"}\n{"prompt_id": "p1"}\n')
    with pytest.raises(RunError, match=r"bad.jsonl:2: expected an object with a string `model`"):
        JsonlResponses(path).generate(PROMPTS, PAPER_DEFAULT)
    path.write_text('{"prompt_id": "p1", "model": "m", "response": 3}\n')
    with pytest.raises(RunError, match=r"bad.jsonl:1: `response` must be a string"):
        JsonlResponses(path).generate(PROMPTS, PAPER_DEFAULT)
    path.write_text('{"prompt_id": "zzz", "model": "m", "response": "?"}\n')
    with pytest.raises(RunError, match="no answers to these prompts"):
        JsonlResponses(path).generate(PROMPTS, PAPER_DEFAULT)
    with pytest.raises(RunError, match="not found"):
        JsonlResponses(tmp_path / "none.jsonl").generate(PROMPTS, PAPER_DEFAULT)


def test_written_responses_read_back_through_the_jsonl_generator(tmp_path: Path) -> None:
    written = [Response("p1", "m", i, f"answer {i} é") for i in range(3)]
    write_responses(tmp_path / "r.jsonl", written)
    assert JsonlResponses(tmp_path / "r.jsonl").generate(PROMPTS, PAPER_DEFAULT) == written


def test_paper_decoding_presets() -> None:
    assert (PAPER_DEFAULT.n, PAPER_DEFAULT.top_p, PAPER_DEFAULT.temperature) == (50, 0.9, 1.0)
    assert PAPER_DEFAULT.min_p == 0.0
    assert (PAPER_DIVERSE.min_p, PAPER_DIVERSE.top_p, PAPER_DIVERSE.temperature) == (0.1, 1.0, 2.0)
    with pytest.raises(RunError, match="top_p"):
        SamplingSettings(top_p=0.0)
    # n is how many, not what one sample looks like: it stays out of the cache identity.
    assert PAPER_DEFAULT.replace(n=3).decoding() == PAPER_DEFAULT.decoding()


def test_cache_keys_are_canonical() -> None:
    assert cache_key({"a": 1, "b": [1, 2]}) == cache_key({"b": [1, 2], "a": 1})
    assert cache_key({"a": 1}) != cache_key({"a": 1.5})


def test_cache_survives_reopening(tmp_path: Path) -> None:
    with DiskCache(tmp_path / "c.sqlite") as cache:
        cache.put("k1", b"v1")
        cache.put_many({"k2": b"v2", "k3": b"v3"})
        cache.put("k1", b"new")
    with DiskCache(tmp_path / "c.sqlite") as cache:
        assert len(cache) == 3
        assert cache.get("k1") == b"new" and cache.get("nope") is None
        assert cache.get_many(["k2", "k3", "nope"]) == {"k2": b"v2", "k3": b"v3"}


def test_cache_keeps_every_committed_entry_when_the_process_is_killed(tmp_path: Path) -> None:
    # Writes 40 entries, never closes the database, and SIGKILLs itself: no cleanup runs.
    # cache.py is loaded by its path: importing the expc.runtime package would load torch.
    script = f"""
import importlib.util, os, signal
spec = importlib.util.spec_from_file_location("cache", {str(CACHE_PY)!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
cache = module.DiskCache({str(tmp_path / "c.sqlite")!r})
for i in range(40):
    cache.put(f"k{{i}}", str(i).encode())
os.kill(os.getpid(), signal.SIGKILL)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert result.returncode == -9
    with DiskCache(tmp_path / "c.sqlite") as cache:
        assert len(cache) == 40
        assert cache.get("k39") == b"39"
