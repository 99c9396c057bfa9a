"""From responses to the report, with hand-made embeddings and hand-computed numbers."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from expc.runtime.hivemind import Prompt, Response, analyze, write_report

VECTORS = {"x": [1.0, 0.0], "y": [0.0, 1.0], "xy": [1.0, 1.0]}
PROMPTS = [Prompt("p1", "advice", "?"), Prompt("p2", "opinion", "?")]
ANSWERS = {
    ("m1", "p1"): ["x", "x"],
    ("m1", "p2"): ["x", "y"],
    ("m2", "p1"): ["y", "y"],
    ("m2", "p2"): ["xy", "xy"],
}
RESPONSES = [
    Response(prompt, model, i, text)
    for (model, prompt), texts in ANSWERS.items()
    for i, text in enumerate(texts)
]


def embed(texts: Sequence[str]) -> np.ndarray:
    rows = np.array([VECTORS[t] for t in texts])
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_numbers_by_hand() -> None:
    result = analyze(PROMPTS, RESPONSES, embed, top_n=3)
    assert result.models == ["m1", "m2"]
    # m1: p1 identical (1), p2 orthogonal (0); m2: both prompts identical pairs.
    assert result.intra_mean == {"m1": pytest.approx(0.5), "m2": pytest.approx(1.0)}
    assert result.share_above["m1"] == {"0.7": 0.5, "0.8": 0.5, "0.9": 0.5}
    assert result.histogram["m1"][0] == 50.0 and result.histogram["m1"][9] == 50.0
    # m1 x m2: p1 has 4 pairs of cos 0; p2 has 4 pairs of cos 1/sqrt(2). Pooled: 1/(2 sqrt 2).
    assert result.inter[0][1] == result.inter[1][0] == pytest.approx(1 / (2 * math.sqrt(2)))
    # m1 with itself, self-pairs in: p1 all 1 (4), p2 1,0,0,1 -> 6/8; without: (1 + 0)/2.
    assert result.inter[0][0] == pytest.approx(0.75)
    assert result.inter_without_self[0][0] == pytest.approx(0.5)
    assert result.by_category["m1"]["advice"]["intra"] == pytest.approx(1.0)
    assert result.by_category["m1"]["opinion"]["intra"] == pytest.approx(0.0)
    assert result.by_category["m2"]["opinion"]["share_above_0.8"] == 1.0
    # p1: x,x | y,y: the nearest is always the own model's twin; N=3 takes everything.
    assert result.top_n_sources[1] == pytest.approx((1.0 + 1.0) / 2)
    assert result.top_n_sources[3] == pytest.approx(2.0)
    score = next(s for s in result.scores if (s.model, s.prompt_id) == ("m1", "p2"))
    assert (score.samples, score.distinct_1, score.category) == (2, 1.0, "opinion")


def test_report_files(tmp_path: Path) -> None:
    result = analyze(PROMPTS, RESPONSES, embed, top_n=3)
    path = write_report(result, tmp_path, title="hivemind test", notes=["Settings: tiny."])
    text = path.read_text()
    # The t interval over 2 prompts (1.0 and 0.0): 0.5 ± 12.706 × 0.5.
    assert "| m1 | 2 | 0.500 | [-5.853, 6.853] | 50.0% | 50.0% | 50.0% |" in text
    assert "| m1 | 0.750 (0.500) | 0.354 |" in text
    assert "| m2 | opinion | 1 | 1.000 | 100.0% |" in text
    assert "Settings: tiny." in text
    for png in ("inter_model.png", "intra_histogram.png", "distributions.png", "top_n_sources.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["inter"][0][1] == pytest.approx(0.3536, abs=1e-4)
    assert saved["top_n_sources"]["3"] == 2.0
