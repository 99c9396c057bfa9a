"""runtime.fit, the training loop every objective runs: a tiny objective written against
its hooks, trained alone, resumed, in two stages and as an ensemble; and the divergence
watch as a user meets it (`--set train.lr=10`)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from expc import runtime
from tests.conftest import run_cli


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 12
    second_steps: int = 0
    lr: float = 0.05
    eval_every: int = 4
    checkpoint_every: int = 0


@dataclass(frozen=True)
class Run:
    name: str = "main"
    seed: int = 3
    scale: float = 1.0  # multiplies the loss: a large one makes the run blow up
    train: TrainConfig = field(default_factory=TrainConfig)


class Regression(runtime.Training):
    """Least squares on a fixed random problem; batches drawn from the run's generator."""

    metrics = ("step", "stage", "lr", "train_loss", "val_loss", "diverged", "blown_up")

    def __init__(self, run: Run) -> None:
        torch.manual_seed(run.seed)
        self.run = run
        self.model = torch.nn.Linear(4, 1)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=run.train.lr)
        self.precision = runtime.Precision("fp32", torch.device("cpu"))
        self.generator = torch.Generator().manual_seed(run.seed)
        self.entered: list[tuple[int, bool]] = []
        schedule = runtime.WarmupCosine(run.train.lr, 2, run.train.steps, 0.1)
        self.stages = [
            runtime.Stage(run.train.steps, run.train.eval_every, lr=schedule, blowup=2.0)
        ]
        if run.train.second_steps:
            self.stages.append(
                runtime.Stage(
                    run.train.second_steps, run.train.eval_every, lr=runtime.Constant(0.01)
                )
            )

    def enter_stage(self, index: int, fresh: bool) -> None:
        self.entered.append((index, fresh))

    def draw(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(8, 4, generator=self.generator)
        return x, x.sum(dim=1, keepdim=True)

    def loss(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.run.scale * ((model(x) - y) ** 2).mean()

    def evaluate(self, done: int) -> dict[str, float]:
        x = torch.ones(2, 4)
        return {"val_loss": ((self.model(x) - 4.0) ** 2).mean().item()}

    def state_dict(self) -> dict[str, object]:
        return {**super().state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, object]) -> None:
        super().load_state_dict(state)
        self.generator.set_state(state["generator"])


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_a_run_logs_every_evaluation_and_its_summary_is_the_last_row(tmp_path: Path) -> None:
    summary = runtime.fit(Regression(Run()), tmp_path)
    rows = _rows(tmp_path)
    assert [r["step"] for r in rows] == [4, 8, 12]
    assert "stage" not in rows[0]  # one stage: no stage column
    assert rows[0]["lr"] == pytest.approx(runtime.WarmupCosine(0.05, 2, 12, 0.1)(3))
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert summary == rows[-1] == json.loads((tmp_path / "summary.json").read_text())
    assert not any("blown_up" in r or "diverged" in r for r in rows)


def test_warmup_cosine_is_the_schedule_the_templates_wrote() -> None:
    schedule = runtime.WarmupCosine(lr=3e-3, warmup=60, steps=600, min_lr_ratio=0.1)
    for step in (0, 59, 60, 300, 599, 700):
        if step < 60:
            expected = 3e-3 * (step + 1) / 60
        else:
            progress = (step - 60) / max(1, 600 - 60)
            floor = 3e-3 * 0.1
            expected = floor + 0.5 * (3e-3 - floor) * (1.0 + math.cos(math.pi * min(1.0, progress)))
        assert schedule(step) == expected  # bit for bit: smoke goldens depend on it


class Interrupt(Exception):
    pass


class StopAfter:
    """A progress bar that kills the run (raises) after `steps` steps, as a crash would."""

    def __init__(self, steps: int) -> None:
        self.left = steps

    def advance(self, loss: float | None = None, steps: int = 1) -> None:
        if loss is not None:  # a step, not the resumed run's catch-up
            self.left -= 1
            if self.left == 0:
                raise Interrupt


@pytest.mark.parametrize(("every", "crash"), [(0, 10), (0, 11), (3, 7), (3, 13)])
def test_resume_from_any_checkpoint_ends_where_an_uninterrupted_run_ends(
    tmp_path: Path, every: int, crash: int
) -> None:
    run = Run(train=TrainConfig(steps=10, second_steps=6, checkpoint_every=every))
    runtime.fit(Regression(run), tmp_path / "whole")
    with pytest.raises(Interrupt):
        runtime.fit(Regression(run), tmp_path / "part", StopAfter(crash))
    resumed = Regression(run)
    runtime.fit(resumed, tmp_path / "part", resume=True)
    assert _rows(tmp_path / "part") == _rows(tmp_path / "whole")
    assert [r["stage"] for r in _rows(tmp_path / "whole")] == [1, 1, 1, 2, 2]
    # Resumed inside a stage, the stage is entered as resumed; a later one, fresh.
    last = 10 if every == 0 and crash >= 10 else (crash // every) * every
    entered = [(0 if last <= 10 else 1, False)] + ([(1, True)] if last <= 10 else [])
    assert resumed.entered == entered


def test_a_non_finite_loss_stops_the_run_with_a_diverged_row(tmp_path: Path) -> None:
    training = Regression(Run())
    step = training.step

    def poisoned(index: int) -> tuple[float, dict]:
        value, stats = step(index)
        return (math.nan, {"train_loss": math.nan}) if index == 5 else (value, stats)

    training.step = poisoned  # type: ignore[method-assign]
    summary = runtime.fit(training, tmp_path)
    rows = _rows(tmp_path)
    assert rows[-1]["step"] == 6 and rows[-1]["diverged"] == 1
    assert summary["diverged"] == 1 and len(rows) == 2


def test_a_loss_far_above_its_start_marks_the_row_blown_up(tmp_path: Path) -> None:
    run = Run(train=TrainConfig(lr=3.0))  # SGD at lr 3 on this problem grows without bound
    runtime.fit(Regression(run), tmp_path)
    rows = _rows(tmp_path)
    assert any(r.get("blown_up") == 1 for r in rows)
    assert all(math.isfinite(r["train_loss"]) for r in rows if "blown_up" in r)


def test_an_ensemble_trains_each_member_as_its_standalone_run(tmp_path: Path) -> None:
    runs = [Run(name="a", seed=1), Run(name="b", seed=2, train=TrainConfig(lr=0.02))]
    for run in runs:
        runtime.fit(Regression(run), tmp_path / "alone" / run.name)
    dirs = [tmp_path / "together" / run.name for run in runs]
    runtime.fit_ensemble([Regression(run) for run in runs], dirs)
    for run, together in zip(runs, dirs, strict=True):
        alone, stacked = _rows(tmp_path / "alone" / run.name), _rows(together)
        assert [r["step"] for r in alone] == [r["step"] for r in stacked]
        for a, b in zip(alone, stacked, strict=True):
            assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)


def test_lr_ten_on_the_main_experiment_is_reported_as_blown_up(tmp_path: Path) -> None:
    """The issue's case: `--set train.lr=10` ends with a training loss ~30x its start and
    a validation perplexity of 1e103; the rows and the report must say it blew up."""
    result = run_cli(
        "run", "specs/gated_attention.exp", "--smoke", "--variant", "vanilla",
        "--set", "train.lr=10", "--out", tmp_path / "runs", "--generated", tmp_path / "gen",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    experiment = next((tmp_path / "runs").iterdir())
    rows = _rows(experiment / "vanilla")
    assert rows[-1]["blown_up"] == 1
    report = (experiment / "report.md").read_text()
    assert "`vanilla` blew up from step" in report
    assert not (experiment / "blown_up.png").exists()


def test_a_clean_run_has_no_stability_words(tmp_path: Path) -> None:
    result = run_cli(
        "run", "specs/gated_attention.exp", "--smoke", "--variant", "vanilla",
        "--set", "train.steps=4", "--out", tmp_path / "runs", "--generated", tmp_path / "gen",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    experiment = next((tmp_path / "runs").iterdir())
    assert "Training stability" not in (experiment / "report.md").read_text()
