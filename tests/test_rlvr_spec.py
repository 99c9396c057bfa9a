"""specs/rlvr_passk.exp end to end: the smoke profile through the CLI, what it writes (metrics,
passk.json, the stage-1 checkpoint, the report), and exact resume in either stage."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
from conftest import compile_text, import_generated, run_cli, smoke_dir

from expc.compiler import compile_path
from expc.runtime import apply_overrides, read_metrics

SPEC = Path("specs/rlvr_passk.exp")


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory):
    return import_generated(compile_path(SPEC).files, tmp_path_factory.mktemp("rlvr"))


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    result = run_cli("run", SPEC, "--smoke", "--out", out)
    assert result.exit_code == 0, result.output
    return smoke_dir(out, "rlvr_passk")


@pytest.mark.parametrize("variant", ["gated", "vanilla"])
def test_smoke_rows_cover_both_stages(smoke: Path, variant: str) -> None:
    rows = read_metrics(smoke / variant)
    assert [row["step"] for row in rows] == [10, 20, 24]  # pretrain 20 steps, then 4 GRPO steps
    pretrain, rl = rows[:2], rows[2]
    assert math.log(256) + 0.5 > pretrain[0]["train_loss"] > pretrain[1]["train_loss"]
    assert all("reward" not in row for row in pretrain)
    assert "train_loss" not in rl
    assert 0.0 <= rl["reward"] <= 1.0 and rl["kl"] == 0.0  # kl = 0: no reference term
    assert 1.0 <= rl["completion_length"] <= 40
    assert all(0.0 <= row["pass_at_1"] <= 1.0 for row in rows)


def test_smoke_writes_passk_and_a_report(smoke: Path) -> None:
    summary = json.loads((smoke / "gated" / "passk.json").read_text())
    assert summary["ks"] == [1, 2, 4, 8] and summary["problems"] == 4
    for model in ("base", "rl"):
        curve = summary[model]["pass_at_k"]
        assert curve == sorted(curve) and 0.0 <= curve[0] and curve[-1] <= 1.0
        assert all(0 <= c <= 8 for c in summary[model]["correct"])
        solved = sum(c > 0 for c in summary[model]["correct"]) / 4
        assert summary[model]["coverage"] == solved == pytest.approx(curve[-1])
    assert summary["budget"]["rollouts"] == 4 * 4 * 8  # steps x prompts x group size
    final = json.loads((smoke / "gated" / "summary.json").read_text())
    assert final["base_pass_at_8"] == summary["base"]["pass_at_k"][-1]
    report = (smoke / "report.md").read_text()
    assert "## pass@k: base (after pretraining) vs RL (after GRPO)" in report
    assert "| 8 |" in report and "crossover k" in report and "coverage" in report
    assert report.index("### gated") < report.index("### vanilla")
    assert (smoke / "passk.png").stat().st_size > 1000


def test_base_counts_come_from_the_stage_1_checkpoint(smoke: Path, package) -> None:
    _, train_module = package
    run_dir = smoke / "gated"
    run = apply_overrides(train_module.RUNS["gated"], train_module.PROFILES["smoke"])
    assert dataclasses.asdict(run) == json.loads((run_dir / "config.json").read_text())
    training = train_module.RLVRTraining(run, run_dir, torch.device("cpu"))
    base = training.load_base()  # run_dir/pretrain.pt, frozen
    counts = training.count_correct(base, run.eval.samples)
    assert counts == json.loads((run_dir / "passk.json").read_text())["base"]["correct"]


TINY = """\
experiment tiny {}
data arithmetic { operands = 2  digits = 1  test_fraction = 0.5 }
model transformer {
  layers = 1
  width = 16
  heads = 2
}
objective rlvr { group_size = 4  kl = 0.1 }
train {
  pretrain { steps = 6  batch_size = 8  warmup = 2  eval_every = 2 }
  rl { steps = 4  prompts = 2  updates = 2  eval_every = 2 }
}
eval { problems = 3  samples = 4  track_samples = 2 }
metrics = [train_loss, pass_at_1, reward, kl, clip_fraction]
profile smoke { train.pretrain.steps = 2 }
"""


class Interrupt(Exception):
    pass


class StopAt:
    """A progress reporter that kills the run after `steps` steps, like a crash."""

    def __init__(self, steps: int) -> None:
        self.left = steps

    def advance(self, loss: float | None = None, steps: int = 1) -> None:
        self.left -= steps
        if self.left < 0:
            raise Interrupt


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    return import_generated(compile_text(TINY).files, tmp_path_factory.mktemp("tiny"))[1]


@pytest.mark.parametrize("crash_after", [3, 8])  # in stage 1, and in stage 2
def test_resume_in_either_stage_matches_an_uninterrupted_run(
    tiny, tmp_path: Path, crash_after: int
) -> None:
    run = tiny.RUNS["main"]
    tiny.train(run, tmp_path / "whole")
    with pytest.raises(Interrupt):
        tiny.train(run, tmp_path / "resumed", progress=StopAt(crash_after))
    tiny.train(run, tmp_path / "resumed", resume=True)

    def outputs(folder: str) -> tuple[list, dict]:
        rows = [
            {k: v for k, v in row.items() if k != "elapsed_s"}
            for row in read_metrics(tmp_path / folder)
        ]
        passk = json.loads((tmp_path / folder / "passk.json").read_text())
        return rows, {k: v for k, v in passk.items() if k != "budget"}

    whole = outputs("whole")
    assert [row["step"] for row in whole[0]] == [2, 4, 6, 8, 10]
    assert whole[0][-1]["kl"] >= 0  # kl = 0.1: the reference term is computed
    assert outputs("resumed") == whole
