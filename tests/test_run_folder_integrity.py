"""A finished run's folder edited behind our back (issue 34, item 5): each edit is listed as
damaged by `expc runs` and trained again with the reason, never reported or skipped as
finished. Each case is caught by one check of integrity.problem alone, so removing that
check fails its test."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import MINIMAL, run_cli

from expc.runtime import integrity
from expc.verdict import verdict_of

SPEC = MINIMAL.replace("steps = 2", "steps = 4") + "target cpu {}\n"


def _expc(*args: object, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "expc", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with s.exp and runs/ holding its one finished run (trained once)."""
    folder = tmp_path_factory.mktemp("finished")
    (folder / "s.exp").write_text(SPEC)
    result = _expc("run", "s.exp", "--out", "runs", cwd=folder)
    assert result.returncode == 0, result.stdout + result.stderr
    return folder


@pytest.fixture
def project(trained: Path, tmp_path: Path) -> Path:
    shutil.copytree(trained, tmp_path / "p")
    return tmp_path / "p"


def _run_dir(project: Path) -> Path:
    return project / "runs/tiny/main"


def _lines(run_dir: Path) -> list[str]:
    return (run_dir / "metrics.jsonl").read_text().splitlines(keepends=True)


def _edit_one_number(run_dir: Path) -> None:
    """The last row's train_loss changed; the rows, their count and steps are as written."""
    lines = _lines(run_dir)
    row = json.loads(lines[-1])
    key = next(k for k, v in row.items() if k != "step" and isinstance(v, float))
    row[key] = round(row[key] / 2, 6)
    lines[-1] = json.dumps(row) + "\n"
    (run_dir / "metrics.jsonl").write_text("".join(lines))


def _duplicate_a_row(run_dir: Path) -> None:
    """Row 3 overwritten by a copy of row 2: the same count of rows, a repeated step."""
    lines = _lines(run_dir)
    lines[2] = lines[1]
    (run_dir / "metrics.jsonl").write_text("".join(lines))


def _edit_the_summary(run_dir: Path) -> None:
    summary = json.loads((run_dir / "summary.json").read_text())
    key = next(k for k, v in summary.items() if k != "step" and isinstance(v, float))
    summary[key] = summary[key] / 2
    (run_dir / "summary.json").write_text(json.dumps(summary))


def test_the_untouched_run_verifies(project: Path) -> None:
    run_dir = _run_dir(project)
    assert integrity.problem(run_dir) is None
    assert "summary_sha256" in json.loads((run_dir / "integrity.json").read_text())
    assert "finished" in run_cli("runs", project / "runs").output


@pytest.mark.parametrize(
    "edit,reason,legacy",
    [
        # Same rows, same steps: only the metrics checksum sees it.
        (_edit_one_number, "metrics.jsonl differs from what the run wrote (checksum)", False),
        # A folder from before integrity.json: only the step order sees it.
        (_duplicate_a_row, "metrics.jsonl steps do not increase at line 3", True),
        (_duplicate_a_row, "metrics.jsonl steps do not increase at line 3", False),
        # The summary's step is unchanged: only the summary checksum sees it.
        (_edit_the_summary, "summary.json differs from what the run wrote (checksum)", False),
    ],
    ids=["one-number-edited", "row-duplicated-legacy", "row-duplicated", "summary-edited"],
)
def test_an_edited_finished_run_is_damaged_and_never_skipped(
    project: Path, edit, reason: str, legacy: bool
) -> None:  # noqa: ANN001
    run_dir = _run_dir(project)
    if legacy:
        (run_dir / "integrity.json").unlink()
    edit(run_dir)
    assert integrity.problem(run_dir) == reason
    listed = run_cli("runs", project / "runs").output
    assert "damaged" in listed and "finished" not in listed
    config = json.loads((run_dir / "config.json").read_text())
    for resume in (False, True):
        verdict = verdict_of(run_dir, config, force=False, resume=resume)
        assert not verdict.skip and verdict.resume is False
        assert reason in verdict.message and "training it again from step 0" in verdict.message


def test_an_edited_run_is_trained_again_with_the_reason(project: Path) -> None:
    run_dir = _run_dir(project)
    _edit_one_number(run_dir)
    edited = (run_dir / "metrics.jsonl").read_text()
    again = _expc("run", "s.exp", "--out", "runs", "--resume", cwd=project)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "its files do not verify (metrics.jsonl differs" in again.stdout
    assert (run_dir / "metrics.jsonl").read_text() != edited
    assert integrity.problem(run_dir) is None
    assert "finished" in run_cli("runs", project / "runs").output
