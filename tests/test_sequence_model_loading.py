"""Any sequence-model run folder serves and samples: an rlvr policy as well as a next_token LM.

An RLVR run (`objective rlvr`, `data arithmetic`) has no `data.context`; its policy is the
same byte-level transformer, so `LanguageModel`, `CheckpointGenerator` and `expc serve` take
it, with the context bounded by the task. Runs of other models (crl's residual MLPs,
diffusion's U-Net) get a one-line RunError. Real smoke runs, no mocks; each compiles its
spec into its own temporary generated/ folder, so the tests never rewrite the repository's.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch
from conftest import ROOT, run_cli, smoke_dir
from hivemind_helpers import Server, free_port

from expc.runtime import RunError
from expc.runtime.checkpoint import load_checkpoint
from expc.runtime.hivemind import CheckpointGenerator, LanguageModel, Prompt, SamplingSettings
from expc.runtime.rlvr import ArithmeticTask

RLVR_MODEL = "rlvr_passk/gated"
PROMPT = "57+08-33="  # a problem in the spec's format: 3 operands of 2 digits


def _smoke_run(out: Path, spec: str, variant: str) -> Path:
    """`expc run SPEC --smoke --variant VARIANT` into out/runs, compiled into out/generated;
    returns the run folder."""
    result = subprocess.run(
        [sys.executable, "-m", "expc", "run", spec, "--smoke", "--variant", variant]
        + ["--out", str(out / "runs"), "--generated", str(out / "generated")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    return smoke_dir(out / "runs", Path(spec).stem) / variant


def _generated(run_dir: Path) -> Path:
    """The generated/ folder _smoke_run compiled run_dir's spec into."""
    return run_dir.parent.parent.parent / "generated"


@pytest.fixture(scope="module")
def rlvr_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """runs/rlvr_passk/gated of a real smoke run (20 pretrain + 4 GRPO steps, ~5 s)."""
    return _smoke_run(tmp_path_factory.mktemp("rlvr_runs"), "specs/rlvr_passk.exp", "gated")


def _task() -> ArithmeticTask:
    return ArithmeticTask(operands=3, digits=2, noise=0.2, test_fraction=0.1)


def test_rlvr_policy_loads_with_the_task_bounded_context(rlvr_run: Path) -> None:
    lm = LanguageModel(rlvr_run, generated=_generated(rlvr_run))
    task = _task()
    # The longest sequence the policy saw: a prompt plus the longest worked solution.
    assert lm.context == task.prompt_length + task.max_completion_length == 42
    assert lm.describe() == {
        "name": RLVR_MODEL,
        "checkpoint": str(rlvr_run / "checkpoint.pt"),
        "step": 24,  # 20 pretrain + 4 GRPO steps
        "context": 42,
        "max_context": 42,
    }
    assert lm.run.objective.group_size == 8 and lm.run.data.operands == 3
    trained = load_checkpoint(rlvr_run / "checkpoint.pt")["model"]
    for name, value in lm.model.state_dict().items():
        assert torch.equal(value, trained[name]), name
    longer = LanguageModel(rlvr_run, generated=_generated(rlvr_run), max_context=128)
    assert longer.max_context == 128  # RoPE: longer is fine


def test_rlvr_policy_samples_n_completions_of_a_prompt(rlvr_run: Path) -> None:
    lm = LanguageModel(rlvr_run, generated=_generated(rlvr_run))
    budget = _task().max_completion_length  # what training's sampler allows a rollout
    completions = lm.complete(PROMPT, n=5, max_tokens=budget, seed=3)
    assert len(completions) == 5
    assert all(c.finish_reason == "length" and c.tokens == budget for c in completions)
    assert lm.complete(PROMPT, n=5, max_tokens=budget, seed=3) == completions
    assert len({c.text for c in completions}) > 1  # a barely trained policy at temperature 1
    # Greedy, cut at the task's stop token (a newline ends every solution).
    greedy = lm.complete(PROMPT, n=2, max_tokens=budget, temperature=0, stop=["\n"])
    assert greedy[0] == greedy[1] and "\n" not in greedy[0].text
    with pytest.raises(RunError, match=r"max_tokens must be < the context \(42 bytes\)"):
        lm.complete(PROMPT, max_tokens=42)


def test_checkpoint_generator_samples_an_rlvr_run(rlvr_run: Path, tmp_path: Path) -> None:
    """What a hivemind spec's `checkpoints = ["runs/rlvr_passk/gated"]` builds."""
    generator = CheckpointGenerator(
        rlvr_run, generated=_generated(rlvr_run), max_context=64, cache_path=tmp_path / "s.sqlite"
    )
    prompts = [Prompt("p0", "arithmetic", PROMPT), Prompt("p1", "arithmetic", "12+34-05=")]
    settings = SamplingSettings(n=3, max_tokens=20, seed=1)
    responses = generator.generate(prompts, settings)
    assert [(r.model, r.prompt_id, r.sample) for r in responses] == [
        (RLVR_MODEL, p.id, i) for p in prompts for i in range(3)
    ]
    assert generator.generate(prompts, settings) == responses
    assert generator.stats == {"cached": 2, "sampled": 0}


class _Server(Server):
    """hivemind_helpers' `expc serve` subprocess, with `--generated`; no --max-context, so
    the server uses the trained context."""

    def __init__(self, run_dir: Path, log: Path, generated: Path) -> None:
        self.port = free_port()
        self.log = log
        self.url = f"http://127.0.0.1:{self.port}/v1"
        args = ["serve", str(run_dir), "--port", str(self.port), "--threads", "1"]
        with open(log, "w") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "expc", *args, "--generated", str(generated)],
                cwd=ROOT,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        self._wait_ready()


@pytest.fixture(scope="module")
def rlvr_server(rlvr_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("serve") / "server.log"
    running = _Server(rlvr_run, log, _generated(rlvr_run))
    yield running
    running.stop()


def test_expc_serve_answers_completions_for_an_rlvr_run(rlvr_server: Server) -> None:
    cards = httpx.get(rlvr_server.url + "/models").json()["data"]
    assert [c["id"] for c in cards] == [RLVR_MODEL]
    assert cards[0]["expc"]["max_context"] == 42 and cards[0]["expc"]["step"] == 24
    body = {"model": RLVR_MODEL, "prompt": PROMPT, "n": 4, "max_tokens": 12, "seed": 9}
    reply = httpx.post(rlvr_server.url + "/completions", json=body, timeout=60)
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert [c["index"] for c in answer["choices"]] == [0, 1, 2, 3]
    assert answer["usage"]["prompt_tokens"] == len(PROMPT)
    again = httpx.post(rlvr_server.url + "/completions", json=body, timeout=60).json()
    assert [c["text"] for c in again["choices"]] == [c["text"] for c in answer["choices"]]
    chat = {"model": RLVR_MODEL, "messages": [{"role": "user", "content": PROMPT}]}
    reply = httpx.post(rlvr_server.url + "/chat/completions", json=chat, timeout=60)
    assert reply.status_code == 200 and reply.json()["choices"][0]["message"]["role"] == "assistant"


@pytest.fixture(scope="module")
def other_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Smoke runs of the two non-sequence models: crl's residual MLP and diffusion's U-Net."""
    out = tmp_path_factory.mktemp("other_runs")
    return {
        "crl": _smoke_run(out, "specs/crl_depth.exp", "u_maze-depth_4"),
        "diffusion": _smoke_run(out, "specs/diffusion_memorization.exp", "n_16"),
    }


@pytest.mark.parametrize("kind", ["crl", "diffusion"])
def test_a_non_sequence_run_is_a_one_line_run_error(other_runs: dict[str, Path], kind: str) -> None:
    run_dir = other_runs[kind]
    assert (run_dir / "checkpoint.pt").is_file()
    # <experiment>/<run>: the experiment's name, not its folder's (crl_depth@smoke).
    name = {"crl": "crl_depth/u_maze-depth_4", "diffusion": "diffusion_memorization/n_16"}[kind]
    expected = rf"^{name} is not a sequence model \(.+\); .*`model transformer` spec"
    with pytest.raises(RunError, match=expected) as caught:
        LanguageModel(run_dir, generated=_generated(run_dir))
    message = str(caught.value)
    assert "\n" not in message and "next_token or rlvr" in message
    with pytest.raises(RunError, match="is not a sequence model"):
        CheckpointGenerator(run_dir, generated=_generated(run_dir))
    result = run_cli("serve", str(run_dir), "--generated", str(_generated(run_dir)))
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)  # no traceback
    assert "Traceback" not in result.output
    assert f"error: {message}" in " ".join(result.output.split())
