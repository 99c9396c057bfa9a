"""Behaviour that one-line slips could change with no other test noticing: spec strings
with backslashes in generated code, RNG restore on resume, RoPE's frequencies against a
from-scratch formula, the RLVR crossover and coverage edge cases, and the diffusion
objective's DDPM defaults."""

from __future__ import annotations

import ast
import importlib.util
import random
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import MINIMAL, ROOT, compile_text, import_generated

from expc.compiler.components.objectives.diffusion import Diffusion
from expc.runtime import load_checkpoint, restore_rng, save_checkpoint
from expc.runtime.diffusion.schedule import linear_schedule, make_schedule
from expc.runtime.rlvr.passk import coverage, crossover_k

# --- 1. spec strings with backslashes ----------------------------------------------------

# Each is the text itself (Python spelling); `_exp_string` writes it as a .exp literal.
# `\x`, `\N` and `\u12` are syntax errors in an unescaped Python string, `\d` a warning, a
# trailing backslash swallows the newline after it, and `\n` / `\\` change the text.
TRICKY = [
    r"hex \x41 escape",
    r"named \N{BULLET} and \N alone",
    r"short unicode \u12 and \U0001 here",
    "ends in a backslash \\",
    r"text \n and \t are two characters each, \\ is two backslashes",
    r"a \d warning and a \"quoted\" word and a plain \ alone",
    r"C:\new\table\x00 " + "long words to make the description wrap " * 4 + "\\",
]


def _exp_string(text: str) -> str:
    """`text` as a .exp string literal (its escapes: \\\\ and \\")."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _parse(source: str, path: str) -> ast.Module:
    """Parse generated code, refusing invalid-escape warnings as errors too."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compile(source, path, "exec")
        return ast.parse(source, path)


def _unwrap(paragraph: str) -> str:
    return " ".join(paragraph.split("\n"))


@pytest.mark.parametrize(
    "description", TRICKY, ids=["x", "N", "u", "trailing", "n-t-bs", "d-quote", "wrapped"]
)
def test_a_description_with_backslashes_survives_into_every_docstring(description: str) -> None:
    spec = MINIMAL.replace(
        "experiment tiny {}", f"experiment tiny {{ description = {_exp_string(description)} }}"
    )
    compiled = compile_text(spec)
    assert compiled.spec.config.experiment.description == description
    for path in ("tiny/__init__.py", "tiny/train.py"):
        module = _parse(compiled.files[path], path)
        docstring = module.body[0].value.value  # type: ignore[attr-defined]
        paragraph = docstring.split("\n\n")[1]
        assert _unwrap(paragraph) == description, path


def test_a_hivemind_description_with_backslashes_survives_too() -> None:
    description = TRICKY[0] + " " + TRICKY[3]
    spec = (
        f"experiment hm {{ description = {_exp_string(description)} }}\n"
        'model generators { checkpoints = ["runs/a/b"] }\n'
        "objective hivemind {}\n"
    )
    files = compile_text(spec).files
    for path in ("hm/__init__.py", "hm/train.py"):
        docstring = _parse(files[path], path).body[0].value.value  # type: ignore[attr-defined]
        assert _unwrap(docstring.split("\n\n")[1]) == description, path


def test_a_corpus_path_and_sweep_values_with_backslashes_reach_the_runs_table(
    tmp_path: Path,
) -> None:
    base, swept = r"C:\data\x41.txt", [r"a\x\N", "b\\u12\\"]
    spec = (
        MINIMAL.replace(
            "data text { context = 16 }",
            f"data text {{ context = 16 corpus = {_exp_string(base)} }}",
        )
        + "sweep corpus {\n  data.corpus = ["
        + ", ".join(map(_exp_string, swept))
        + "]\n}\n"
    )
    files = compile_text(spec).files
    for path, text in files.items():
        _parse(text, path)
    _, train = import_generated(files, tmp_path / "pkg")
    assert train.DataConfig().corpus == base
    assert sorted(run.data.corpus for run in train.RUNS.values()) == sorted(swept)


# --- 2. RNG state through a checkpoint ---------------------------------------------------


def _draws() -> tuple[list[float], float, list[float]]:
    return torch.rand(5).tolist(), random.random(), np.random.rand(3).tolist()


def test_restore_rng_puts_torch_python_and_numpy_back(tmp_path: Path) -> None:
    torch.manual_seed(3)
    random.seed(4)
    np.random.seed(5)
    _draws()  # somewhere mid-stream, not at a fresh seed
    save_checkpoint(tmp_path / "ckpt.pt", step=7)
    first = _draws()
    _draws()  # the generators move on
    state = load_checkpoint(tmp_path / "ckpt.pt")
    assert state["step"] == 7
    restore_rng(state["rng"])
    again = _draws()
    assert again[0] == first[0], "torch"
    assert again[1] == first[1], "python random"
    assert again[2] == first[2], "numpy"


def test_restore_rng_restores_each_generator_on_its_own(tmp_path: Path) -> None:
    # Each generator is checked alone, so a restore that skipped one cannot hide behind
    # another's draws.
    save_checkpoint(tmp_path / "ckpt.pt", step=0)
    rng = load_checkpoint(tmp_path / "ckpt.pt")["rng"]
    for draw in (lambda: torch.rand(4).tolist(), random.random, lambda: np.random.rand(2).tolist()):
        restore_rng(rng)
        expected = draw()
        draw()
        restore_rng(rng)
        assert draw() == expected


# --- 3. RoPE frequencies -----------------------------------------------------------------


def _rope_from_scratch(length: int, head_dim: int, base: float, start: int):
    """cos/sin(p * theta_i), theta_i = base^(-2i/d), i = 0 .. d/2 - 1, in float64."""
    half = head_dim // 2
    theta = [base ** (-2.0 * i / head_dim) for i in range(half)]
    angles = torch.tensor(
        [[p * t for t in theta] for p in range(start, start + length)], dtype=torch.float64
    )
    return angles.cos(), angles.sin()


def _check_tables(cos: torch.Tensor, sin: torch.Tensor, length, head_dim, base, start) -> None:
    assert cos.shape == sin.shape == (length, 1, head_dim // 2)
    want_cos, want_sin = _rope_from_scratch(length, head_dim, base, start)
    torch.testing.assert_close(cos[:, 0].double(), want_cos, rtol=0, atol=2e-5)
    torch.testing.assert_close(sin[:, 0].double(), want_sin, rtol=0, atol=2e-5)


@pytest.mark.parametrize(
    ("width", "heads", "base"), [(16, 2, 10000.0), (24, 2, 500.0), (32, 8, 1e6)]
)
def test_generated_rope_tables_follow_base_to_the_minus_2i_over_d(
    tmp_path: Path, width: int, heads: int, base: float
) -> None:
    spec = MINIMAL.replace(
        "width = 16\n  heads = 2", f"width = {width}\n  heads = {heads}\n  rope_base = {base}"
    )
    model_module, _ = import_generated(compile_text(spec).files, tmp_path / "pkg")
    config = model_module.ModelConfig()
    assert config.rope_base == base
    head_dim = width // heads
    cos, sin = model_module.rope_tables(13, head_dim, config.rope_base, torch.device("cpu"), 3)
    _check_tables(cos, sin, 13, head_dim, base, 3)

    # The model calls it with its own head dim and base: spy on the forward pass.
    calls = []
    original = model_module.rope_tables

    def spy(length, dim, rope_base, device, start=0):
        calls.append((length, dim, rope_base, start))
        return original(length, dim, rope_base, device, start)

    model_module.rope_tables = spy
    try:
        torch.manual_seed(0)
        model = model_module.Transformer(config)
        with torch.no_grad():
            model(torch.randint(0, 256, (1, 5)))
    finally:
        model_module.rope_tables = original
    assert calls and all(c[:3] == (5, head_dim, base) for c in calls)


def test_committed_gated_attention_model_rope_tables_follow_the_formula() -> None:
    path = ROOT / "generated" / "gated_attention" / "model.py"
    spec = importlib.util.spec_from_file_location("_pinned_gated_attention_model", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        for head_dim, base in [(8, 10000.0), (64, 10000.0), (16, 1e6)]:
            cos, sin = module.rope_tables(9, head_dim, base, torch.device("cpu"), 0)
            _check_tables(cos, sin, 9, head_dim, base, 0)
    finally:
        sys.modules.pop(spec.name, None)


# --- 4. RLVR crossover and coverage ------------------------------------------------------


def test_crossover_counts_a_tie_at_the_last_k() -> None:
    ks = [1, 2, 4, 8]
    assert crossover_k(ks, [0.5, 0.6, 0.7, 0.8], [0.2, 0.4, 0.6, 0.8]) == pytest.approx(8.0)


def test_crossover_is_where_the_gap_first_touches_zero_even_if_it_rebounds() -> None:
    ks = [1, 2, 4, 8, 16]
    rl = [0.5, 0.6, 0.7, 0.8, 0.9]
    # gap: 0.25, 0.25, 0 (touch), 0.25 (rebound), -0.25
    base = [0.25, 0.35, 0.7, 0.55, 1.15]
    assert crossover_k(ks, rl, base) == pytest.approx(4.0)
    # A touch that rebounds and never falls again still counts.
    assert crossover_k(ks[:4], rl[:4], base[:4]) == pytest.approx(4.0)


def test_no_crossover_when_the_curves_tie_at_the_first_k() -> None:
    # "None when the RL curve is not above the base at the first k."
    ks = [1, 2, 4]
    assert crossover_k(ks, [0.5, 0.5, 0.5], [0.5, 0.75, 1.0]) is None
    assert crossover_k(ks, [0.5, 0.75, 1.0], [0.5, 0.5, 0.5]) is None
    assert crossover_k([], [], []) is None


def test_coverage_counts_a_problem_solved_exactly_once() -> None:
    assert coverage([1]) == 1.0
    assert coverage([1, 0]) == 0.5
    assert coverage([0, 1, 1, 2]) == 0.75
    assert coverage([0, 0]) == 0.0


# --- 5. diffusion defaults ---------------------------------------------------------------

DIFFUSION = """\
experiment tiny_diffusion {}
data shapes { n = 8 held_out = 16 size = 8 }
model unet { width = 8 channel_multipliers = [1, 2] attention_levels = [false, false] groups = 4 }
objective diffusion {}
train { steps = 6 batch_size = 4 }
target cpu { threads = 1 }
eval { evaluations = 2 first_eval = 3 samples = 8 sampling_steps = 3 loss_images = 8 }
"""


def test_diffusion_objective_defaults_are_ddpm_s() -> None:
    objective = Diffusion()
    assert objective.schedule == "linear"
    assert objective.timesteps == 1000
    assert objective.beta_start == 1e-4
    assert objective.beta_end == 2e-2


def test_a_default_diffusion_spec_generates_the_ddpm_schedule(tmp_path: Path) -> None:
    compiled = compile_text(DIFFUSION)
    objective = compiled.spec.config.objective
    assert (objective.timesteps, objective.beta_start, objective.beta_end) == (1000, 1e-4, 2e-2)
    _, train = import_generated(compiled.files, tmp_path / "pkg")
    config = train.ObjectiveConfig()
    assert (config.timesteps, config.beta_start, config.beta_end) == (1000, 1e-4, 2e-2)
    schedule = train.noise_schedule(config)
    assert schedule.steps == 1000
    assert schedule.betas[0].item() == pytest.approx(1e-4, rel=1e-12)
    assert schedule.betas[-1].item() == pytest.approx(2e-2, rel=1e-12)
    # Linear in between: the step is (2e-2 - 1e-4) / 999.
    steps = schedule.betas.diff()
    assert torch.allclose(steps, torch.full_like(steps, (2e-2 - 1e-4) / 999), rtol=1e-9, atol=0)
    assert all(run.objective.timesteps == 1000 for run in train.RUNS.values())


def test_runtime_schedule_defaults_are_ddpm_s() -> None:
    for schedule in (linear_schedule(), make_schedule("linear")):
        assert schedule.steps == 1000
        assert schedule.betas[0].item() == pytest.approx(1e-4, rel=1e-12)
        assert schedule.betas[-1].item() == pytest.approx(2e-2, rel=1e-12)
