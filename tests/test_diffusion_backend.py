"""The diffusion backend end to end: spec -> generated U-Net and loop -> run -> report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT, compile_text, import_generated, smoke_dir
from diffusion_fixtures import one_thread  # noqa: F401

from expc.runtime import read_metrics

pytestmark = pytest.mark.usefixtures("one_thread")

SPEC = "specs/diffusion_memorization.exp"

TINY = """\
experiment tiny_diffusion {}
data shapes { n = 8 held_out = 16 size = 8 }
model unet { width = 8 channel_multipliers = [1, 2] attention_levels = [false, false] groups = 4 }
objective diffusion { timesteps = 50 }
train { steps = 6 batch_size = 4 ema = 0.9 }
target cpu { threads = 1 }
eval { evaluations = 2 first_eval = 3 samples = 8 sampling_steps = 3 loss_images = 8 }
metrics = [train_loss, train_denoising_loss, test_denoising_loss, memorization, gap_ratio, quality]
"""


def _package(text: str, root: Path):
    return import_generated(compile_text(text).files, root)


def test_fixed_choices_are_written_into_the_code(tmp_path: Path) -> None:
    files = compile_text(TINY).files
    model_py, train_py = files["tiny_diffusion/model.py"], files["tiny_diffusion/train.py"]
    assert "CHANNEL_MULTIPLIERS = (1, 2)" in model_py
    assert "SelfAttention" not in model_py and "ATTENTION" not in model_py  # none asked for
    assert 'SCHEDULE = "linear"' in train_py and 'SAMPLER = "ddim"' in train_py
    assert "shapes_splits" in train_py and "load_images" not in train_py
    assert "kernel" not in train_py  # kernel_quality was not asked for
    varied = (
        TINY + "variant fast {}\nvariant slow { eval.sampler = ddpm objective.schedule = cosine }\n"
    )
    varied_train = compile_text(varied).files["tiny_diffusion/train.py"]
    assert 'sampler: Literal["ddim", "ddpm"]' in varied_train
    assert 'schedule: Literal["cosine", "linear"]' in varied_train
    assert "method=run.eval.sampler" in varied_train and "SAMPLER =" not in varied_train
    attended = TINY.replace("attention_levels = [false, false]", "attention_levels = [false, true]")
    attended = attended.replace("groups = 4 }", "groups = 4 mid_attention = true }")
    attended_model = compile_text(attended).files["tiny_diffusion/model.py"]
    assert "ATTENTION = (False, True)" in attended_model
    assert "self.mid_attention = SelfAttention" in attended_model


@pytest.mark.parametrize(
    ("size", "channels", "levels", "attention"),
    [
        (8, 1, "[1, 2]", "[false, false]"),
        (16, 3, "[1, 2, 2]", "[false, true, true]"),
        (4, 1, "[1]", "[true]"),
    ],
)
def test_generated_unet_maps_images_to_noise_of_their_shape(
    tmp_path: Path, size: int, channels: int, levels: str, attention: str
) -> None:
    text = TINY.replace("size = 8", f"size = {size} channels = {channels}")
    text = text.replace("channel_multipliers = [1, 2]", f"channel_multipliers = {levels}")
    text = text.replace("attention_levels = [false, false]", f"attention_levels = {attention}")
    model_module, _ = _package(text, tmp_path)
    torch.manual_seed(0)
    model = model_module.UNet(model_module.ModelConfig(), image_channels=channels)
    x = torch.randn(3, channels, size, size)
    t = torch.tensor([0, 10, 49])
    out = model(x, t)
    assert out.shape == x.shape
    # The timestep matters: the same image at another t gives another prediction.
    assert not torch.allclose(out, model(x, torch.tensor([49, 10, 0])))
    out.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.slow  # three short trainings: ~5 s on an idle core
def test_generated_loop_matches_after_an_interrupted_run_is_resumed(tmp_path: Path) -> None:
    _, train = _package(TINY, tmp_path / "pkg")
    run = train.RUNS["main"]

    class Crash(Exception):
        pass

    class CrashAfter:
        def __init__(self, steps: int) -> None:
            self.left = steps

        def advance(self, steps: int = 1, loss: float | None = None) -> None:
            if loss is not None:
                self.left -= 1
                if self.left == 0:
                    raise Crash

    whole = train.train(run, tmp_path / "whole")
    with pytest.raises(Crash):
        train.train(run, tmp_path / "cut", progress=CrashAfter(4))  # after the step-3 checkpoint
    resumed = train.train(run, tmp_path / "cut", resume=True)
    timing = {"elapsed_s", "cpu_s"}
    strip = lambda rows: [{k: v for k, v in r.items() if k not in timing} for r in rows]  # noqa: E731
    assert strip(read_metrics(tmp_path / "cut")) == strip(read_metrics(tmp_path / "whole"))
    assert resumed["step"] == whole["step"] == 6


def test_stop_when_memorized_ends_the_run_early(tmp_path: Path) -> None:
    # A gap threshold just below 1 calls almost every sample "memorized", so the first
    # evaluation (step 3 of 6) already passes stop_memorized = 0.5.
    text = TINY.replace("ema = 0.9 }", "ema = 0.9 stop_memorized = 0.5 }")
    text = text.replace("loss_images = 8 }", "loss_images = 8 gap_threshold = 0.999 }")
    _, train = _package(text, tmp_path / "pkg")
    row = train.train(train.RUNS["main"], tmp_path / "run")
    assert row["step"] == 3 and row["memorization"] >= 0.5
    assert [r["step"] for r in read_metrics(tmp_path / "run")] == [3]
    assert (tmp_path / "run" / "summary.json").exists()


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    result = subprocess.run(
        [sys.executable, "-m", "expc", "run", SPEC, "--smoke", "--out", out]
        + ["--variant", "n_32", "--variant", "n_64"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "report: " in result.stdout
    return smoke_dir(out, "diffusion_memorization")


def test_smoke_run_writes_sane_metrics(smoke: Path) -> None:
    for n in (32, 64):
        rows = read_metrics(smoke / f"n_{n}")
        assert [r["step"] for r in rows] == [3, 6]
        for row in rows:
            assert row["epochs"] == pytest.approx(row["step"] * 16 / n)
            assert 0.0 <= row["memorization"] <= 1.0
            assert 0.0 < row["gap_ratio"] <= 1.0
            # An untrained eps-predictor is far from the noise: loss near E[eps^2] = 1 or above.
            assert 0.1 < row["test_denoising_loss"] < 5.0
            assert row["quality"] > 0 and row["cpu_s"] > 0
        assert json.loads((smoke / f"n_{n}" / "config.json").read_text())["data"]["n"] == n
        grids = sorted((smoke / f"n_{n}" / "samples").glob("*.png"))
        assert [g.name for g in grids] == ["step_0000003.png", "step_0000006.png"]


def test_smoke_report_has_the_timescales(smoke: Path) -> None:
    report = (smoke / "report.md").read_text()
    assert "## Memorization and generalization timescales" in report
    assert "| n_32 | 32 | 6 |" in report
    assert "(n_32/samples/step_0000003.png)" in report
    assert (smoke / "timescales.png").stat().st_size > 1000
    assert (smoke / "timescale_curves.png").stat().st_size > 1000
