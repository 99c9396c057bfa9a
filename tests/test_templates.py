"""The shape of the templates: each objective fills the loop's hooks and says nothing
twice. An objective template is short, shares no run of lines with another, and an
ensemble spec's train.py adds little to the plain one (the ensemble is a mode of the loop,
not a second copy of it)."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pytest
from conftest import MINIMAL, ROOT, compile_text, run_cli

OBJECTIVES = ROOT / "expc" / "templates" / "objectives"
TRAINING = sorted(p for p in OBJECTIVES.glob("*.py.j2") if "hivemind" not in p.name)
WINDOW = 6  # lines, whitespace aside


def _windows(path: Path) -> set[tuple[str, ...]]:
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return {tuple(lines[i : i + WINDOW]) for i in range(len(lines) - WINDOW + 1)}


@pytest.mark.parametrize("template", TRAINING, ids=[p.name for p in TRAINING])
def test_an_objective_template_is_short(template: Path) -> None:
    assert len(template.read_text().splitlines()) <= 300


def test_no_run_of_lines_is_written_in_two_objective_templates() -> None:
    templates = sorted(OBJECTIVES.glob("*.py.j2"))
    for a, b in itertools.combinations(templates, 2):
        shared = _windows(a) & _windows(b)
        assert not shared, (a.name, b.name, sorted(shared)[:1])


SPECS = {
    "next_token": "specs/gated_attention.exp",
    "crl": "specs/crl_depth.exp",
    "diffusion": "specs/diffusion_memorization.exp",
    "rlvr": "specs/rlvr_passk.exp",
}


def _with_ensemble(text: str, mode: str) -> str:
    text = re.sub(r"\n\s*ensemble\s*=\s*\S+", "", text)
    if re.search(r"\ntarget \w+ \{", text):
        return re.sub(r"\ntarget (\w+) \{", rf"\ntarget \1 {{ ensemble = {mode}", text, count=1)
    return text + f"\ntarget cpu {{ ensemble = {mode} }}\n"


@pytest.mark.parametrize("objective", sorted(SPECS))
def test_an_ensemble_is_a_mode_of_the_plain_file(objective: str, tmp_path: Path) -> None:
    text = (ROOT / SPECS[objective]).read_text()
    text = re.sub(r'extends "[^"]*"\n', "", text)  # every committed spec here stands alone
    plain = compile_text(_with_ensemble(text, "off")).files
    stacked = compile_text(_with_ensemble(text, "auto")).files
    name = next(n for n in plain if n.endswith("/train.py"))
    assert "ensemble" not in plain[name].lower()
    added = len(stacked[name].splitlines()) - len(plain[name].splitlines())
    assert 0 < added <= 120, added


def test_generated_config_holds_only_the_fields_its_code_reads() -> None:
    """The spike counter's settings exist only where `loss_spikes` is measured, the
    device count only under DDP; what the loop and the report read stays."""
    plain = compile_text(MINIMAL).files["tiny/train.py"]
    assert "spike_factor" not in plain and "spike_window" not in plain
    assert "devices:" not in plain
    for kept in ("steps: int", "checkpoint_every: int", "threads: int", "seed: int"):
        assert kept in plain, kept
    ddp = compile_text(MINIMAL + "target cpu { strategy = ddp devices = 2 }\n").files
    assert "devices: int = 2" in ddp["tiny/train.py"]  # the ranks the launcher starts
    counted = compile_text(MINIMAL + "metrics = [train_loss, val_loss, loss_spikes]\n").files
    assert "spike_factor: float" in counted["tiny/train.py"]
    assert "self.spikes = runtime.SpikeCounter" in counted["tiny/train.py"]


def test_the_report_keeps_the_fields_it_reads_from_config_json() -> None:
    files = compile_text((ROOT / "specs" / "diffusion_memorization.exp").read_text()).files
    train = files["diffusion_memorization/train.py"]
    assert "memorization_threshold: float" in train and "generalization_tolerance" in train


def test_setting_a_field_no_code_reads_is_an_error(tmp_path: Path) -> None:
    spec = tmp_path / "tiny.exp"
    spec.write_text(MINIMAL)
    result = run_cli(
        "run", spec, "--set", "train.spike_factor=2", "--out", tmp_path / "runs",
        "--generated", tmp_path / "gen",
    )  # fmt: skip
    assert result.exit_code == 1
    assert "sets `train.spike_factor` to 2.0, but no code of this spec reads it" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "runs").exists()


def test_a_run_finished_with_a_setting_no_code_reads_any_more_is_still_finished(
    tmp_path: Path,
) -> None:
    """A folder whose config.json records a field the generated config no longer has (no
    code reads it) holds this config's run: it is skipped, not refused as changed."""
    spec = tmp_path / "tiny.exp"
    spec.write_text(MINIMAL)
    args = ("run", spec, "--out", tmp_path / "runs", "--generated", tmp_path / "gen")
    assert run_cli(*args).exit_code == 0
    config_path = tmp_path / "runs" / "tiny" / "main" / "config.json"
    config = json.loads(config_path.read_text())
    config["train"]["spike_factor"] = 1.5  # what expc wrote before it left the field out
    config_path.write_text(json.dumps(config))
    again = run_cli(*args)
    assert again.exit_code == 0, again.output
    assert "finished earlier with this config, skipped" in again.output
    config["train"]["steps"] = 3  # a field the code reads: that is another config
    config_path.write_text(json.dumps(config))
    refused = run_cli(*args)
    assert refused.exit_code == 1 and "train.steps 3 -> 2" in refused.output
