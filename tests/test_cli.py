"""The CLI as a user drives it: compile, check, diff, fmt, schema, explain."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from conftest import MINIMAL, ROOT, run_cli

GATED = Path("specs/gated_attention.exp")


def test_compile_writes_a_package_and_is_idempotent(tmp_path: Path) -> None:
    first = run_cli("compile", GATED, "-o", tmp_path)
    assert first.exit_code == 0, first.output
    assert "3 file(s) written" in first.output
    files = sorted(p.name for p in (tmp_path / "gated_attention").iterdir())
    assert files == ["__init__.py", "model.py", "train.py"]
    again = run_cli("compile", GATED, "-o", tmp_path)
    assert "up to date" in again.output


def test_check_passes_on_fresh_output_and_fails_with_a_diff_on_hand_edits(tmp_path: Path) -> None:
    run_cli("compile", GATED, "-o", tmp_path)
    assert run_cli("check", GATED, "-o", tmp_path).exit_code == 0
    model = tmp_path / "gated_attention" / "model.py"
    model.write_text(model.read_text().replace("mlp_ratio: int = 4", "mlp_ratio: int = 8"))
    result = run_cli("check", GATED, "-o", tmp_path)
    assert result.exit_code == 2
    assert "-    mlp_ratio: int = 8" in result.output
    assert "+    mlp_ratio: int = 4" in result.output
    assert "run `expc compile`" in result.output


def test_check_flags_stray_files_and_specs_without_output(tmp_path: Path) -> None:
    run_cli("compile", GATED, "-o", tmp_path)
    (tmp_path / "gated_attention" / "extra.py").write_text("x = 1\n")
    assert run_cli("check", GATED, "-o", tmp_path).exit_code == 2
    shutil.rmtree(tmp_path / "gated_attention")
    assert run_cli("check", GATED, "-o", tmp_path).exit_code == 2


def test_check_of_the_repository_passes() -> None:
    result = run_cli("check")
    assert result.exit_code == 0, result.output


def test_diff_shows_what_turning_the_gate_on_changes(tmp_path: Path) -> None:
    vanilla = tmp_path / "vanilla.exp"
    gated = tmp_path / "gated.exp"
    vanilla.write_text(MINIMAL)
    gated.write_text(MINIMAL.replace("heads = 2", "heads = 2\n  attention { gate = elementwise }"))
    result = run_cli("diff", vanilla, gated)
    assert result.exit_code == 0
    assert "+        self.gate = nn.Linear(config.width, config.width, bias=False)" in result.output
    assert "+        y = y * self.gate_scores(x)" in result.output
    same = run_cli("diff", vanilla, vanilla)
    assert "identical" in same.output


def test_fmt_rewrites_checks_and_keeps_comments(tmp_path: Path) -> None:
    spec = tmp_path / "messy.exp"
    spec.write_text("# about\nexperiment   tiny{seed=1 # why\n}\n")
    assert run_cli("fmt", "--check", spec).exit_code == 1
    assert run_cli("fmt", spec).exit_code == 0
    assert spec.read_text() == "# about\nexperiment tiny {\n  seed = 1 # why\n}\n"
    assert run_cli("fmt", "--check", spec).exit_code == 0
    printed = run_cli("fmt", "-", input="experiment t{}\n")
    assert printed.output == "experiment t {}\n"


def test_repository_specs_are_formatted() -> None:
    assert run_cli("fmt", "--check").exit_code == 0


def test_schema_is_json_schema_of_the_ir() -> None:
    result = run_cli("schema")
    schema = json.loads(result.output)
    assert schema["title"] == "Spec"
    transformer = schema["$defs"]["Transformer"]["properties"]
    assert transformer["layers"]["minimum"] == 1
    assert "span" not in transformer  # source spans are internal


def test_explain_prints_every_default_and_every_run() -> None:
    result = run_cli("explain", GATED)
    assert result.exit_code == 0
    assert "min_lr_ratio = 0.1" in result.output  # a default the spec never wrote
    assert "# run `vanilla`" in result.output
    assert "model.attention.gate = none" in result.output
    as_json = json.loads(run_cli("explain", GATED, "--json").output)
    assert [r["name"] for r in as_json["runs"]] == ["vanilla", "gated"]


def test_explain_output_is_a_valid_spec_with_the_same_meaning(tmp_path: Path) -> None:
    from expc.compiler import resolve
    from expc.compiler.explain import config_text
    from expc.compiler.source import SourceFile

    spec, _ = resolve(SourceFile.read(ROOT / GATED))
    text = config_text(spec.config)
    again, _ = resolve(SourceFile("explained.exp", text))
    assert again.config.model_dump() == spec.config.model_dump()


def test_missing_file_is_a_clear_error() -> None:
    result = run_cli("compile", "nope.exp")
    assert result.exit_code == 1
    assert "no such file or folder: nope.exp" in result.output
