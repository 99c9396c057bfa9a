"""`expc run` end to end: real training in the smoke profile, and the numbers it writes."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, experiment_dir, run_cli, smoke_dir

from expc.runtime import apply_overrides, read_metrics

TABLE4 = ["first_token_attention", "max_activation"]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float, str]:
    out = tmp_path_factory.mktemp("runs")
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "expc", "run", "specs/gated_attention.exp", "--smoke", "--out", out],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - started
    assert result.returncode == 0, result.stderr
    return smoke_dir(out, "gated_attention"), elapsed, result.stdout


def test_smoke_run_is_quick_and_reports(smoke_run) -> None:
    experiment, elapsed, stdout = smoke_run
    # Seconds-long alone; the bound is loose because the rest of the suite shares the cores.
    # The default profile takes about ten minutes, so a smoke profile that stopped applying
    # would still fail here.
    assert elapsed < 240
    assert "report: " in stdout
    report = (experiment / "report.md").read_text()
    assert report.index("| vanilla |") < report.index("| gated |")  # the spec's order
    assert (experiment / "val_loss.png").stat().st_size > 1000


def test_metrics_rows_have_the_named_metrics_and_sane_values(smoke_run) -> None:
    experiment, _, _ = smoke_run
    for variant in ("vanilla", "gated"):
        rows = read_metrics(experiment / variant)
        assert [row["step"] for row in rows] == [10, 20]
        for row in rows:
            for key in ["train_loss", "val_loss", "val_ppl", *TABLE4]:
                assert isinstance(row[key], float), (variant, key)
            assert row["val_ppl"] == pytest.approx(math.exp(row["val_loss"]))
            assert 0.0 < row["first_token_attention"] < 1.0
            assert row["max_activation"] > 0
        # Byte-level loss starts near ln(256) = 5.55 and must fall within 20 steps.
        assert rows[-1]["val_loss"] < rows[0]["val_loss"] < math.log(256) + 0.5
    gated = read_metrics(experiment / "gated")
    assert all(0.0 < row["gate_score"] < 1.0 for row in gated)
    assert all("gate_score" not in row for row in read_metrics(experiment / "vanilla"))


def test_run_directory_holds_config_summary_and_checkpoint(smoke_run) -> None:
    experiment, _, _ = smoke_run
    run_dir = experiment / "gated"
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"]["attention_gate"] == "elementwise"
    assert config["train"]["steps"] == 20
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary == read_metrics(run_dir)[-1]
    assert (run_dir / "checkpoint.pt").exists()


def test_variant_and_set_select_and_override(tmp_path: Path) -> None:
    result = run_cli(
        "run",
        "specs/gated_attention.exp",
        "--smoke",
        "--variant",
        "gated",
        "--set",
        "train.steps=4",
        "--set",
        "train.eval_every=2",
        "--out",
        tmp_path,
    )
    assert result.exit_code == 0, result.output
    # --set gets its own folder beside the smoke profile's, named by a hash of the overrides.
    sets = ["train.steps=4", "train.eval_every=2"]
    folder = experiment_dir(tmp_path, "gated_attention", "smoke", sets)
    assert re.fullmatch(r"gated_attention@smoke\+set-[0-9a-f]{8}", folder.name)
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]
    rows = read_metrics(folder / "gated")
    assert [r["step"] for r in rows] == [2, 4]
    assert not (folder / "vanilla").exists()


def test_bad_overrides_are_located_errors(tmp_path: Path) -> None:
    typo = run_cli("run", "specs/gated_attention.exp", "--set", "train.stesp=4", "--out", tmp_path)
    assert typo.exit_code == 1
    assert "unknown field `stesp` in `train`" in typo.output
    assert "--> --set#1:1:1" in typo.output and "did you mean `steps`?" in typo.output
    bad_type = run_cli("run", "specs/gated_attention.exp", "--set", "train.lr=fast")
    assert "`train.lr` must be a number" in bad_type.output
    fixed = run_cli("run", "specs/gated_attention.exp", "--set", "model.norm=layernorm")
    assert fixed.exit_code == 1
    assert "generated code supports only" in fixed.output
    unknown = run_cli("run", "specs/gated_attention.exp", "--variant", "gatd")
    assert "no run or variant named `gatd`" in unknown.output
    assert "did you mean `gated`?" in unknown.output
    assert "Traceback" not in typo.output + bad_type.output + fixed.output + unknown.output


def test_generated_train_runs_standalone(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "generated.gated_attention.train",
            "--run",
            "vanilla",
            "--smoke",
            "--set",
            "train.steps=3",
            "--set",
            "train.eval_every=3",
            "--out",
            tmp_path,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    rows = read_metrics(tmp_path / "gated_attention" / "vanilla")
    assert [r["step"] for r in rows] == [3]


def test_apply_overrides_coerces_and_rejects(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT))
    try:
        from generated.gated_attention import train
    finally:
        sys.path.remove(str(ROOT))
    run = apply_overrides(train.RUNS["gated"], {"train.lr": "0.01", "seed": "3"})
    assert run.train.lr == 0.01 and run.seed == 3
    run = apply_overrides(run, {"model.attention_gate": "none"})
    assert run.model.attention_gate == "none"
    from expc.runtime import RunError

    with pytest.raises(RunError, match="must be one of"):
        apply_overrides(run, {"model.attention_gate": "sigmoid"})
    with pytest.raises(RunError, match="unknown override"):
        apply_overrides(run, {"train.nope": 1})
    with pytest.raises(RunError, match="must be int"):
        apply_overrides(run, {"train.steps": "many"})
