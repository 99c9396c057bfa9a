"""The report's RLVR section from passk.json files: table, crossover, coverage, the solved-set
comparison, budgets and the plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from expc.runtime.rlvr.passk import pass_at_k
from expc.runtime.rlvr.report import analyse, passk_summary, write_passk


def test_summary_and_section(tmp_path: Path) -> None:
    # Base: four problems solved rarely but all of them; RL: three solved often, one never.
    base, rl = [2, 2, 2, 2], [6, 6, 6, 0]
    summary = passk_summary(base, rl, samples=8, budget={"rl_steps": 5, "rl_s": 1.25})
    assert summary["ks"] == [1, 2, 4, 8]
    assert summary["base"]["pass_at_k"][0] == pytest.approx(0.25)
    assert summary["rl"]["pass_at_k"][0] == pytest.approx(18 / 32)
    assert summary["base"]["coverage"] == 1.0 and summary["rl"]["coverage"] == 0.75
    # RL leads at k = 1 and 2; the base leads from k = 4 on.
    curves = zip(summary["rl"]["pass_at_k"], summary["base"]["pass_at_k"], strict=True)
    gap = [r - b for r, b in curves]
    assert gap[1] > 0 > gap[2]
    assert 2 < summary["crossover_k"] < 4
    assert summary["rl"]["pass_at_k"][2] == pytest.approx(0.75 * pass_at_k(8, 6, 4))
    run = tmp_path / "exp" / "main"
    run.mkdir(parents=True)
    (run / "metrics.jsonl").write_text(json.dumps({"step": 1}) + "\n")
    write_passk(run, summary)
    lines = "\n".join(analyse(tmp_path / "exp"))
    assert "| 1 | 0.2500 | 0.5625 | +0.3125 |" in lines
    assert f"crossover k (base catches up with RL): {summary['crossover_k']:.1f}" in lines
    assert "coverage (solved at any k): base 1.0000, RL 0.7500" in lines
    assert "by RL only 0, by base only 1" in lines
    assert "budget: rl_steps 5, rl_s 1.2" in lines
    assert (tmp_path / "exp" / "passk.png").stat().st_size > 1000


def test_no_finished_run(tmp_path: Path) -> None:
    assert "No run has finished" in analyse(tmp_path)[0]
