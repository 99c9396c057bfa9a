"""Context extension of rotary positions at evaluation (`eval.rope_extension`): YaRN's
frequencies and attention temperature against the published implementation (Hugging Face
transformers' `yarn` RoPE, the YaRN authors' formulas), position interpolation, and the
extended losses a run writes beside the plain ones on the same batches."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from conftest import MINIMAL, compile_text, import_generated, run_cli

from expc.runtime import read_metrics

SPEC = (
    MINIMAL.replace("width = 16", "width = 64").replace("heads = 2", "heads = 2")
    + "eval { context_multiples = [1, 2, 4] rope_extension = [yarn, pi] }\n"
)


@pytest.fixture(scope="module")
def model_module(tmp_path_factory: pytest.TempPathFactory):
    return import_generated(compile_text(SPEC).files, tmp_path_factory.mktemp("gen"))[0]


def _published_yarn(head_dim: int, base: float, factor: float, original: int):
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    config = LlamaConfig(
        hidden_size=head_dim * 2,
        num_attention_heads=2,
        max_position_embeddings=int(original * factor),
        rope_parameters={
            "rope_type": "yarn",
            "rope_theta": base,
            "factor": factor,
            "original_max_position_embeddings": original,
        },
    )
    return ROPE_INIT_FUNCTIONS["yarn"](config, torch.device("cpu"))


@pytest.mark.parametrize(
    ("head_dim", "base", "factor", "original"),
    [
        (32, 10000.0, 4.0, 128),
        (32, 10000.0, 2.0, 128),
        (64, 500000.0, 8.0, 4096),
        (16, 100.0, 3.0, 16),
    ],
)
def test_yarn_frequencies_and_temperature_are_the_published_ones(
    model_module, head_dim: int, base: float, factor: float, original: int
) -> None:
    scaling = model_module.RopeScaling("yarn", factor, original)
    inv_freq, magnitude = model_module.rope_frequencies(
        head_dim, base, torch.device("cpu"), scaling
    )
    expected, attention_factor = _published_yarn(head_dim, base, factor, original)
    torch.testing.assert_close(inv_freq, expected.float(), rtol=1e-6, atol=0)
    assert magnitude == pytest.approx(attention_factor) == pytest.approx(0.1 * math.log(factor) + 1)


def test_yarn_keeps_fast_frequencies_and_interpolates_slow_ones(model_module) -> None:
    plain, one = model_module.rope_frequencies(32, 10000.0, torch.device("cpu"))
    scaled, _ = model_module.rope_frequencies(
        32, 10000.0, torch.device("cpu"), model_module.RopeScaling("yarn", 4.0, 4096)
    )
    assert one == 1.0
    # Over 4096 positions the fastest pairs turn hundreds of times: kept as they are.
    torch.testing.assert_close(scaled[:3], plain[:3])
    # The slowest turn less than once: divided by the factor (position interpolation).
    torch.testing.assert_close(scaled[-3:], plain[-3:] / 4.0)
    assert bool(((scaled <= plain + 1e-12) & (scaled >= plain / 4.0 - 1e-12)).all())


def test_position_interpolation_divides_every_frequency_and_factor_one_is_plain(
    model_module,
) -> None:
    cpu = torch.device("cpu")
    plain, _ = model_module.rope_frequencies(16, 10000.0, cpu)
    pi, magnitude = model_module.rope_frequencies(
        16, 10000.0, cpu, model_module.RopeScaling("pi", 2.0, 16)
    )
    torch.testing.assert_close(pi, plain / 2.0)
    assert magnitude == 1.0
    # Position interpolation's defining property: position 2p stretched = position p plain.
    cos_pi, sin_pi = model_module.rope_tables(
        8, 16, 10000.0, cpu, scaling=model_module.RopeScaling("pi", 2.0, 16)
    )
    cos, sin = model_module.rope_tables(4, 16, 10000.0, cpu)
    torch.testing.assert_close(cos_pi[::2], cos)
    torch.testing.assert_close(sin_pi[::2], sin)
    for kind in ("yarn", "pi"):
        same = model_module.rope_tables(
            8, 16, 10000.0, cpu, scaling=model_module.RopeScaling(kind, 1.0, 16)
        )
        torch.testing.assert_close(same, model_module.rope_tables(8, 16, 10000.0, cpu))


def test_a_run_writes_extended_losses_beside_unchanged_plain_ones(tmp_path: Path) -> None:
    plain = tmp_path / "plain.exp"
    plain.write_text(MINIMAL + "eval { context_multiples = [1, 2] }\n")
    extended = tmp_path / "extended.exp"
    extended.write_text(
        MINIMAL.replace("experiment tiny", "experiment tiny_yarn")
        + "eval { context_multiples = [1, 2] rope_extension = [yarn, pi] }\n"
    )
    out = tmp_path / "runs"
    for spec in (plain, extended):
        result = run_cli("run", str(spec), "--out", str(out), "-o", str(tmp_path / "gen"))
        assert result.exit_code == 0, result.output
    base = read_metrics(out / "tiny/main")
    rows = read_metrics(out / "tiny_yarn/main")
    evaluated = [r for r in rows if "val_loss" in r]
    assert evaluated and all(
        math.isfinite(r["val_loss_x2_yarn"]) and math.isfinite(r["val_loss_x2_pi"])
        for r in evaluated
    )
    # The extensions are measured on the batches plain extrapolation used, which it still uses.
    assert [r["val_loss_x2"] for r in rows if "val_loss" in r] == [
        r["val_loss_x2"] for r in base if "val_loss" in r
    ]
    assert evaluated[-1]["val_loss_x2_yarn"] != evaluated[-1]["val_loss_x2"]
    assert [r.get("train_loss") for r in rows] == [r.get("train_loss") for r in base]
