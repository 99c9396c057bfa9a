"""The runtime API generated code depends on."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from expc.runtime import (
    MetricsLogger,
    RunError,
    load_checkpoint,
    read_metrics,
    read_text_corpus,
    save_checkpoint,
)
from expc.runtime.report import write_report


def test_builtin_corpus_is_cpython_docs() -> None:
    data = read_text_corpus("pydoc_data.topics")
    assert len(data) > 400_000  # ~0.47 MB of English help text in CPython 3.11
    assert data.decode("utf-8").count("statement") > 100
    assert data == read_text_corpus("pydoc_data.topics")  # deterministic order


def test_local_corpus_and_clear_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "book.txt").write_text("hello world " * 200)
    assert read_text_corpus("book.txt").startswith(b"hello world")
    with pytest.raises(RunError, match="not found"):
        read_text_corpus("missing.txt")
    (tmp_path / "short.txt").write_text("tiny")
    with pytest.raises(RunError, match="at least 1024"):
        read_text_corpus("short.txt")


def test_metrics_logger_writes_rows_as_they_come(tmp_path: Path) -> None:
    logger = MetricsLogger(tmp_path, config={"lr": 0.1})
    logger.log({"step": 1, "val_loss": 2.0})
    assert read_metrics(tmp_path) == [{"step": 1, "val_loss": 2.0}]  # flushed already
    logger.log({"step": 2, "val_loss": math.nan})
    logger.close(summary={"step": 2, "val_loss": math.inf})
    assert read_metrics(tmp_path)[1] == {"step": 2, "val_loss": None}
    assert json.loads((tmp_path / "summary.json").read_text()) == {"step": 2, "val_loss": None}
    assert json.loads((tmp_path / "config.json").read_text()) == {"lr": 0.1}


def test_checkpoint_round_trip_and_no_temp_file_left(tmp_path: Path) -> None:
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, model=model, optimizer=optimizer, step=7, run={"name": "x"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]
    state = load_checkpoint(path)
    assert state["step"] == 7 and state["run"] == {"name": "x"}
    restored = torch.nn.Linear(3, 2)
    restored.load_state_dict(state["model"])
    torch.testing.assert_close(restored.weight, model.weight)
    assert set(state["rng"]) == {"torch", "numpy", "python"}


def test_a_checkpoint_holds_several_models_and_optimisers(tmp_path: Path) -> None:
    """No single model or optimiser is assumed: each part with a state_dict is saved as it."""
    actor, critic = torch.nn.Linear(3, 2), torch.nn.Linear(2, 1)
    optimizers = {
        "actor_optimizer": torch.optim.Adam(actor.parameters()),
        "critic_optimizer": torch.optim.SGD(critic.parameters(), lr=0.1),
    }
    critic(actor(torch.randn(4, 3))).sum().backward()
    for optimizer in optimizers.values():
        optimizer.step()
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, step=3, actor=actor, critic=critic, **optimizers, sums={"loss": 1.5})
    state = load_checkpoint(path)
    assert set(state) == {"actor", "critic", *optimizers, "step", "rng", "sums"}
    assert state["critic_optimizer"]["param_groups"][0]["lr"] == 0.1
    restored = torch.nn.Linear(2, 1)
    restored.load_state_dict(state["critic"])
    torch.testing.assert_close(restored.weight, critic.weight)
    assert state["sums"] == {"loss": 1.5} and state["step"] == 3


def test_report_tables_final_rows_of_every_run(tmp_path: Path) -> None:
    for name, loss in (("a", 2.0), ("b", 1.5)):
        logger = MetricsLogger(tmp_path / name, config={})
        logger.log({"step": 1, "val_loss": loss + 1})
        logger.log({"step": 2, "val_loss": loss})
        logger.close(summary={})
    report = write_report(tmp_path).read_text()
    assert "| a | 2 | 2.0000 |" in report
    assert "| b | 2 | 1.5000 |" in report
    assert (tmp_path / "val_loss.png").exists()


def test_report_aggregates_runs_that_differ_only_by_seed(tmp_path: Path) -> None:
    for name, seed, loss in (("a-seed_1", 1, 2.0), ("a-seed_2", 2, 3.0), ("b", 1, 1.0)):
        config = {"name": name, "seed": seed, "model": {"gate": name[0]}}
        logger = MetricsLogger(tmp_path / name, config=config)
        logger.log({"step": 1, "val_loss": loss})
        logger.close(summary={})
    report = write_report(tmp_path).read_text()
    # mean ± std [95% t interval: 2.5 ± 12.706 × 0.7071 / sqrt(2)]
    assert "| a | 2 | 2.5000 ± 0.7071 [-3.8530, 8.8530] |" in report
    assert "| b | 1 | 1.0000 |" in report
