"""specs/hivemind.exp through the compiler and `expc run`: generated code, errors, smoke runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT, compile_text, error_text, write_package
from hivemind_helpers import trained_run  # noqa: F401 - a fixture
from ruff.__main__ import find_ruff_bin

from expc.compiler import compile_path
from expc.runtime import read_metrics

BASE = """\
experiment hm {}
model generators { checkpoints = ["runs/a/b"] }
objective hivemind {}
"""


def test_the_spec_compiles_to_code_specialised_to_its_generators() -> None:
    files = compile_path(Path("specs/hivemind.exp")).files
    assert set(files) == {"hivemind/__init__.py", "hivemind/train.py"}
    train = files["hivemind/train.py"]
    assert '"runs/gated_attention/vanilla",' in train
    assert "CheckpointGenerator" in train
    # No JSONL file or endpoint in this spec: no code for them.
    assert "JsonlResponses" not in train and "OpenAIEndpoint" not in train
    assert '"min_p": Run("min_p", objective=ObjectiveConfig(min_p=0.1, temperature=2.0' in train
    assert "top_p: float = 0.9  # spec line" in train and "n: int = 50  # spec line" in train
    assert "STAGES = 3" in train  # two generators, then embedding and analysis
    assert "class TrainConfig" not in train  # nothing is trained: no training settings


def test_every_generator_kind_compiles_to_lint_clean_code(tmp_path: Path) -> None:
    spec = BASE.replace(
        'model generators { checkpoints = ["runs/a/b"] }',
        'model generators {\n  checkpoints = ["runs/a/b"]\n  jsonl = ["mine.jsonl"]\n'
        '  endpoints = ["llama3@http://127.0.0.1:11434/v1"]\n  api = completions\n}',
    )
    files = compile_text(spec).files
    train = files["hm/train.py"]
    assert 'ENDPOINTS: tuple[str, ...] = ("llama3@http://127.0.0.1:11434/v1",)' in train
    assert 'API = "completions"' in train and 'JSONL: tuple[str, ...] = ("mine.jsonl",)' in train
    write_package(files, tmp_path)
    lint = subprocess.run(
        [find_ruff_bin(), "check", "--config", str(ROOT / "pyproject.toml"), str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert lint.returncode == 0, lint.stdout


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('checkpoints = ["runs/a/b"]', "", "`model generators` names no generator"),
        (
            'checkpoints = ["runs/a/b"]',
            'endpoints = ["http://127.0.0.1:8000/v1"]',
            "endpoint `http://127.0.0.1:8000/v1` is not of the form MODEL@BASE_URL",
        ),
        ("objective hivemind {}", "objective hivemind { temprature = 1.0 }", "did you mean"),
        (
            "objective hivemind {}",
            "objective hivemind { max_tokens = 300 }",
            "`objective.max_tokens` (300) leaves no room for the prompt",
        ),
        (
            "objective hivemind {}",
            'objective hivemind {}\ndata prompts { categories = ["poems"] }',
            "unknown prompt category `poems`",
        ),
        ("objective hivemind {}", "objective hivemind { top_p = 0 }", "top_p"),
    ],
)
def test_bad_specs_get_located_errors(old: str, new: str, message: str) -> None:
    text = error_text(BASE.replace(old, new))
    assert message in text
    assert "test.exp:" in text  # every error points into the spec


def _workspace(tmp: Path, run_dir: Path, names: list[str]) -> Path:
    """A folder laid out like a checkout: specs/, generated/gated_attention, runs/."""
    (tmp / "specs").mkdir()
    (tmp / "generated").mkdir()
    (tmp / "runs" / "gated_attention").mkdir(parents=True)
    os.symlink(ROOT / "generated" / "gated_attention", tmp / "generated" / "gated_attention")
    for name in names:
        os.symlink(run_dir, tmp / "runs" / "gated_attention" / name)
    return tmp


def _expc(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "expc", *args], cwd=cwd, env=env, capture_output=True, text=True
    )


# A tiny stand-in for specs/gated_attention.exp: its two runs have one config, so they
# train the same model.
TINY_LMS = """\
experiment gated_attention { seed = 1337 }
data text { context = 32 }
model transformer {
  layers = 1
  width = 32
  heads = 2
  position = rope
}
objective next_token {}
train { steps = 2 batch_size = 2 eval_every = 2 eval_batches = 1 }
variant vanilla {}
variant gated {}
profile smoke {}
"""


@pytest.mark.slow  # sentence-transformers loads in ~10 s, each run samples and embeds
def test_smoke_run_of_the_spec(tmp_path: Path) -> None:
    # specs/hivemind.exp as it is, reading the runs of a tiny gated_attention.exp beside it
    # that `expc run` trains first. Both of its runs are the same tiny LM: two names, one
    # model. Their samples are then identical, so the inter-model cell must equal the self
    # cell.
    work = tmp_path
    (work / "specs").mkdir()
    (work / "specs" / "hivemind.exp").write_text((ROOT / "specs/hivemind.exp").read_text())
    (work / "specs" / "gated_attention.exp").write_text(TINY_LMS)
    result = _expc(work, "run", "specs/hivemind.exp", "--smoke", "--out", "out")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "hivemind reads gated_attention/vanilla, gated_attention/gated" in result.stdout
    upstream = work / "out" / "gated_attention@smoke"
    checkpoints = [torch.load(upstream / n / "checkpoint.pt", weights_only=False)["model"]
                   for n in ("vanilla", "gated")]  # fmt: skip
    for key, value in checkpoints[0].items():
        assert torch.equal(value, checkpoints[1][key]), key
    experiment = work / "out" / "hivemind@smoke"
    for run in ("top_p", "min_p"):
        (row,) = read_metrics(experiment / run)
        assert row["responses"] == 8 * 4 * 2  # 1 prompt per category x n=4 x 2 models
        assert -1.0 <= row["intra"] <= 1.0 and 0.0 <= row["distinct_2"] <= 1.0
        saved = json.loads((experiment / run / "metrics.json").read_text())
        assert saved["inter"][0][1] == pytest.approx(saved["inter"][0][0])
        assert saved["models"] == ["gated_attention/vanilla", "gated_attention/gated"]
        assert (experiment / run / "inter_model.png").stat().st_size > 1000
        lines = (experiment / run / "responses.jsonl").read_text().splitlines()
        assert len(lines) == 64
    report = (experiment / "report.md").read_text()
    assert "## Run `top_p`" in report and "## Run `min_p`" in report
    assert "temperature = 2.0" in report and "(top_p/inter_model.png)" in report
    # The min-p run's decoding is the paper's diversity setting.
    config = json.loads((experiment / "min_p" / "config.json").read_text())
    assert config["model"]["checkpoints"] == [
        "out/gated_attention@smoke/vanilla",
        "out/gated_attention@smoke/gated",
    ]
    assert [u["run"] for u in config["upstream"]] == ["vanilla", "gated"]
    assert config["objective"] | {"n": 0} == {
        "n": 0, "temperature": 2.0, "top_p": 1.0, "min_p": 0.1, "max_tokens": 16
    }  # fmt: skip


@pytest.mark.slow
def test_jsonl_answers_beside_a_checkpoint(trained_run: Path, tmp_path: Path) -> None:  # noqa: F811
    work = _workspace(tmp_path, trained_run, ["gated"])
    answers = [
        {
            "prompt_id": f"advice-{i}",
            "model": "human",
            "responses": ["Sleep more.", "Go for a walk."],
        }
        for i in (1, 2)
    ]
    (work / "mine.jsonl").write_text("".join(json.dumps(a) + "\n" for a in answers))
    (work / "specs" / "mixed.exp").write_text(
        "experiment mixed {}\n"
        'data prompts { categories = ["advice"] per_category = 2 }\n'
        'model generators { checkpoints = ["runs/gated_attention/gated"] jsonl = ["mine.jsonl"] }\n'
        "objective hivemind { n = 2 max_tokens = 8 }\n"
        "eval { top_n = 3 }\n"
    )
    first = _expc(work, "run", "specs/mixed.exp", "--out", "out")
    assert first.returncode == 0, first.stderr
    saved = json.loads((work / "out" / "mixed" / "main" / "metrics.json").read_text())
    assert saved["models"] == ["gated_attention/gated", "human"]
    # The human answers: the same two sentences for both prompts.
    human = [s for s in saved["scores"] if s["model"] == "human"]
    assert human[0]["intra"] == pytest.approx(human[1]["intra"])
    assert saved["by_category"]["human"]["advice"]["prompts"] == 2
    again = _expc(work, "run", "specs/mixed.exp", "--out", "out")
    assert "finished earlier with this config, skipped" in again.stdout


def test_explain_writes_the_spec_back_with_quoted_paths() -> None:
    from expc.compiler import resolve
    from expc.compiler.explain import config_text
    from expc.compiler.source import SourceFile

    spec, _ = resolve(SourceFile.read(ROOT / "specs/hivemind.exp"))
    text = config_text(spec.config)
    assert 'checkpoints = ["runs/gated_attention/vanilla", "runs/gated_attention/gated"]' in text
    assert "api = chat" in text and "metrics = [intra, inter," in text
    again, _ = resolve(SourceFile("explained.exp", text))
    assert again.config.model_dump() == spec.config.model_dump()


def test_smoke_without_a_smoke_profile_uses_the_objectives_own() -> None:
    """The shared smoke profile shortens `train`, which a hivemind spec does not have."""
    from expc.compiler import components
    from expc.compiler.pipeline import resolve
    from expc.compiler.source import SourceFile

    spec, _ = resolve(SourceFile("hm.exp", BASE), profile="smoke")
    config = spec.runs[0].config
    assert (config.objective.n, config.objective.max_tokens, config.eval.top_n) == (4, 16, 4)
    assert [o.path for o in components.smoke_profile(spec).overrides][0] == ("objective", "n")
