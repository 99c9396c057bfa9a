"""`model transformer` as the image denoiser of `objective diffusion` (a DiT), and the
U-Net's attention gated by the same `attention { gate ... }` block."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT, compile_text, error_text, import_generated, smoke_dir
from diffusion_fixtures import one_thread  # noqa: F401
from reference import reference_attention

from expc.compiler import explain

pytestmark = pytest.mark.usefixtures("one_thread")

DIT = """\
experiment tiny_dit {}
data shapes { n = 8 held_out = 16 size = 8 }
model transformer { layers = 2 width = 32 heads = 2 patch = 2 }
objective diffusion { timesteps = 50 }
train { steps = 6 batch_size = 4 ema = 0.9 }
target cpu { threads = 1 }
eval { evaluations = 2 first_eval = 3 samples = 8 sampling_steps = 3 loss_images = 8 }
metrics = [train_loss, train_denoising_loss, test_denoising_loss, memorization, gap_ratio, quality]
"""
# Every gate the attention block can say, one run each: the code branches on typed fields.
GATED = DIT + (
    "variant vanilla { model.attention.gate = none }\n"
    "variant g1 { model.attention.gate = elementwise }\n"
    "variant g1_silu { model.attention.gate = headwise model.attention.gate_activation = silu }\n"
    "variant g2 { model.attention.gate = elementwise model.attention.gate_position = value }\n"
)
UNET = """\
experiment tiny_gated_unet {}
data shapes { n = 8 held_out = 16 size = 8 }
model unet {
  width = 8
  channel_multipliers = [1, 2]
  attention_levels = [false, true]
  mid_attention = true
  groups = 4
}
objective diffusion { timesteps = 50 }
train { steps = 6 batch_size = 4 ema = 0.9 }
target cpu { threads = 1 }
eval { evaluations = 2 first_eval = 3 samples = 8 sampling_steps = 3 loss_images = 8 }
metrics = [train_loss, train_denoising_loss, test_denoising_loss, memorization, gap_ratio, quality]
variant vanilla { model.attention.gate = none }
variant g1 { model.attention.gate = elementwise }
variant g2 { model.attention.gate = headwise model.attention.gate_position = value }
"""
RUNS = {
    "vanilla": ("none", "sdpa", "sigmoid"),
    "g1": ("elementwise", "sdpa", "sigmoid"),
    "g1_silu": ("headwise", "sdpa", "silu"),
    "g2": ("elementwise", "value", "sigmoid"),
}


@pytest.fixture(scope="module")
def dit(tmp_path_factory: pytest.TempPathFactory):
    """The generated model module of GATED (every gate setting)."""
    model, _ = import_generated(compile_text(GATED).files, tmp_path_factory.mktemp("dit"))
    return model


def _config(module, gate: str, position: str = "sdpa", activation: str = "sigmoid"):
    return module.ModelConfig(
        attention_gate=gate,
        attention_gate_position=position,
        attention_gate_activation=activation,
    )


def _perturb(model: torch.nn.Module) -> None:
    """Move every weight off its initial value (adaLN-Zero starts many at exactly zero)."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))


def test_dit_is_written_for_the_denoiser_role() -> None:
    files = compile_text(DIT).files
    model_py, train_py = files["tiny_dit/model.py"], files["tiny_dit/train.py"]
    assert "class DiT(nn.Module)" in model_py and "class Transformer" not in model_py
    # Sequence-model pieces and fields stay out: no RoPE, KV cache, vocabulary or probe.
    for absent in ("rope", "KVCache", "vocab_size", "Probe", "is_causal"):
        assert absent not in model_py, absent
    assert "patch: int = 2  # spec line 3" in model_py
    assert "from .model import DiT, ModelConfig" in train_py
    construction = (
        "DiT(run.model, image_channels=self.data.shape[0], image_size=self.data.shape[1])"
    )
    assert "".join(construction.split()) in "".join(train_py.split())  # however ruff wraps it
    # A vanilla DiT has no gate code (the adaLN residual gates are another thing).
    for absent in ("self.gate", "gate_scores", "attention_gate", "G1", "G2"):
        assert absent not in model_py, absent
    assert "nn.RMSNorm(config.width, elementwise_affine=False)" in model_py


def test_gate_fixed_in_every_run_is_written_without_a_branch() -> None:
    text = DIT.replace("patch = 2 }", "patch = 2 attention { gate = headwise } }")
    model_py = compile_text(text).files["tiny_dit/model.py"]
    assert "self.gate = nn.Linear(config.width, config.heads, bias=False)" in model_py
    assert "attention_gate" not in model_py and "self.gate is not None" not in model_py


def test_roles_keep_each_field_where_it_means_something() -> None:
    dit_spec = compile_text(GATED).spec
    dit_text = explain.config_text(dit_spec.config)
    assert "patch = 2" in dit_text
    assert "rope_base" not in dit_text and "position" not in dit_text.replace("gate_position", "")
    lm_text = explain.config_text(
        compile_text(
            "experiment tiny {}\ndata text { context = 16 }\nmodel transformer {}\n"
            "objective next_token {}\n"
        ).spec.config
    )
    assert "rope_base = 10000.0" in lm_text and "patch" not in lm_text


@pytest.mark.parametrize(("size", "channels", "patch"), [(8, 1, 2), (8, 3, 4), (4, 1, 1)])
def test_dit_maps_images_to_noise_of_their_shape(
    tmp_path: Path, size: int, channels: int, patch: int
) -> None:
    text = DIT.replace("size = 8", f"size = {size} channels = {channels}")
    model_module, _ = import_generated(
        compile_text(text.replace("patch = 2", f"patch = {patch}")).files, tmp_path
    )
    torch.manual_seed(0)
    model = model_module.DiT(model_module.ModelConfig(), image_channels=channels, image_size=size)
    x, t = torch.randn(3, channels, size, size), torch.tensor([0, 10, 49])
    assert model(x, t).shape == x.shape
    _perturb(model)
    out = model(x, t)
    assert out.shape == x.shape and torch.isfinite(out).all()
    # The timestep matters, and so does where a pixel is (each patch has its own position).
    assert not torch.allclose(out, model(x, torch.tensor([49, 10, 0])))
    with pytest.raises(ValueError, match="not divisible by patch"):
        model_module.DiT(model_module.ModelConfig(patch=3), image_channels=channels, image_size=8)


def test_vanilla_dit_has_no_gate_parameters_and_gated_ones_do(dit) -> None:
    shapes = {"none": None, "elementwise": (32, 32), "headwise": (2, 32)}
    for gate, shape in shapes.items():
        model = dit.DiT(_config(dit, gate), image_channels=1, image_size=8)
        gates = {n: p.shape for n, p in model.named_parameters() if ".attn.gate." in n}
        if shape is None:
            assert gates == {}
        else:
            assert gates == {f"blocks.{i}.attn.gate.weight": shape for i in range(2)}


@pytest.mark.parametrize("run", list(RUNS))
def test_dit_attention_is_the_gate_formula_over_every_patch(dit, run: str) -> None:
    gate, position, activation = RUNS[run]
    torch.manual_seed(0)
    model = dit.DiT(_config(dit, gate, position, activation), image_channels=1, image_size=8)
    attn = model.blocks[0].attn
    x = torch.randn(2, 16, 32)
    expected = reference_attention(attn, x, None, gate, position, activation, causal=False)
    torch.testing.assert_close(attn(x), expected, rtol=1e-5, atol=1e-5)
    # Bidirectional: the first patch's output depends on the last patch.
    changed = x.clone()
    changed[:, -1] += 1.0
    assert not torch.allclose(attn(x)[:, 0], attn(changed)[:, 0])


def test_adaln_zero_makes_every_block_the_identity_and_the_prediction_zero(dit) -> None:
    torch.manual_seed(0)
    model = dit.DiT(_config(dit, "elementwise"), image_channels=1, image_size=8)
    x, t = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 25, 49])
    # At initialisation eps_theta is exactly 0 whatever the image and the timestep.
    assert torch.equal(model(x, t), torch.zeros_like(x))
    assert torch.equal(model(3 * x, t.flip(0)), torch.zeros_like(x))
    tokens, c = torch.randn(4, 16, 32), torch.randn(4, 32)
    for block in model.blocks:
        assert torch.equal(block(tokens, c), tokens)


def test_gradients_reach_every_parameter(dit) -> None:
    torch.manual_seed(0)
    model = dit.DiT(_config(dit, "elementwise"), image_channels=1, image_size=8)
    x, t = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 25, 49])
    noise = torch.randn_like(x)
    loss = (model(x, t) - noise).square().mean()
    loss.backward()
    # adaLN-Zero: at step 0 only the output layer learns; everything behind it is gated off.
    moving = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.any()}
    assert moving == {"head.weight", "head.bias"}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(4):
        optimizer.step()
        optimizer.zero_grad()
        (model(x, t) - noise).square().mean().backward()
    still = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert still == []
    assert (model(x, t) - noise).square().mean() < loss


def test_patch_positions_are_2d_sin_cos(dit) -> None:
    rows, columns, dim = 3, 4, 16
    table = dit.patch_positions(rows, columns, dim, torch.device("cpu"))
    assert table.shape == (rows * columns, dim)
    grid = table.view(rows, columns, dim)
    # The first half of the channels encode the row, the second the column.
    assert torch.equal(
        grid[:, :1, : dim // 2].expand(rows, columns, dim // 2), grid[..., : dim // 2]
    )
    assert torch.equal(
        grid[:1, :, dim // 2 :].expand(rows, columns, dim // 2), grid[..., dim // 2 :]
    )
    frequencies = [10000.0 ** (-k / 4) for k in range(4)]
    expected = [math.sin(2 * f) for f in frequencies] + [math.cos(2 * f) for f in frequencies]
    torch.testing.assert_close(grid[2, 0, : dim // 2], torch.tensor(expected))
    assert len({tuple(row.tolist()) for row in table}) == rows * columns  # all distinct


def _smoke(spec_text: str, tmp_path: Path) -> Path:
    """`expc run SPEC --smoke` through the CLI, generated code into tmp_path (never into the
    repository's generated/); the experiment's run folder."""
    spec = tmp_path / "spec.exp"
    spec.write_text(spec_text)
    result = subprocess.run(
        [sys.executable, "-m", "expc", "run", spec, "--smoke", "--out", tmp_path / "runs"]
        + ["--generated", tmp_path / "generated"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "report: " in result.stdout
    name = spec_text.split()[1]
    assert (tmp_path / "generated" / name / "model.py").exists()
    return smoke_dir(tmp_path / "runs", name)


def _finite_denoising_losses(folder: Path, runs: list[str]) -> None:
    for run in runs:
        rows = [
            json.loads(line) for line in (folder / run / "metrics.jsonl").read_text().splitlines()
        ]
        assert [row["step"] for row in rows] == [3, 6], run
        for row in rows:
            for key in ("train_loss", "train_denoising_loss", "test_denoising_loss"):
                assert math.isfinite(row[key]) and 0.0 < row[key] < 10.0, (run, key, row[key])
    assert (folder / "report.md").exists()


def test_dit_smoke_run_through_the_cli(tmp_path: Path) -> None:
    folder = _smoke(GATED, tmp_path)
    _finite_denoising_losses(folder, list(RUNS))


def test_gated_unet_smoke_run_through_the_cli(tmp_path: Path) -> None:
    folder = _smoke(UNET, tmp_path)
    _finite_denoising_losses(folder, ["vanilla", "g1", "g2"])
    model_py = (tmp_path / "generated" / "tiny_gated_unet" / "model.py").read_text()
    assert "self.attention = Attention(channels, config, heads)" in model_py
    assert "nn.MultiheadAttention(" not in model_py


@pytest.fixture(scope="module")
def unets(tmp_path_factory: pytest.TempPathFactory):
    """(ungated U-Net module: nn.MultiheadAttention, gated U-Net module: the shared one)."""
    root = tmp_path_factory.mktemp("unets")
    vanilla_text = UNET.split("variant vanilla")[0]
    vanilla, _ = import_generated(compile_text(vanilla_text).files, root / "vanilla")
    gated, _ = import_generated(compile_text(UNET).files, root / "gated")
    return vanilla, gated


def test_ungated_unet_keeps_nn_multihead_attention(unets) -> None:
    vanilla, _ = unets
    model = vanilla.UNet(vanilla.ModelConfig(), image_channels=1)
    assert isinstance(model.mid_attention.attention, torch.nn.MultiheadAttention)
    assert not any(".gate." in name for name, _ in model.named_parameters())


def test_unet_attention_without_its_gate_equals_nn_multihead_attention(unets) -> None:
    """The shared attention module with gate = none is the same function as the ungated
    U-Net's nn.MultiheadAttention given the same weights (same QKV layout, biases)."""
    vanilla, gated = unets
    torch.manual_seed(0)
    reference = vanilla.UNet(vanilla.ModelConfig(), image_channels=1).eval()
    model = gated.UNet(gated.ModelConfig(attention_gate="none"), image_channels=1).eval()
    state = {}
    for name, value in reference.state_dict().items():
        name = name.replace("attention.in_proj_weight", "attention.qkv.weight")
        name = name.replace("attention.in_proj_bias", "attention.qkv.bias")
        state[name.replace("attention.out_proj.", "attention.proj.")] = value
    model.load_state_dict(state)
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([3, 40])
    torch.testing.assert_close(model(x, t), reference(x, t), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("gate", "position"), [("elementwise", "sdpa"), ("headwise", "value"), ("none", "sdpa")]
)
def test_unet_attention_is_the_gate_formula(unets, gate: str, position: str) -> None:
    _, gated = unets
    torch.manual_seed(0)
    config = gated.ModelConfig(attention_gate=gate, attention_gate_position=position)
    model = gated.UNet(config, image_channels=1)
    attn = model.mid_attention.attention
    x = torch.randn(2, 16, 16)  # 4 x 4 pixels of the 16-channel bottleneck
    expected = reference_attention(attn, x, None, gate, position, causal=False)
    torch.testing.assert_close(attn(x), expected, rtol=1e-5, atol=1e-5)
    widths = {"none": None, "elementwise": 16, "headwise": 4}
    found = {n: tuple(p.shape) for n, p in model.named_parameters() if ".gate." in n}
    if widths[gate] is None:
        assert found == {}
    else:
        assert found == {
            "down.2.attention.attention.gate.weight": (widths[gate], 16),
            "mid_attention.attention.gate.weight": (widths[gate], 16),
            "up.0.attention.attention.gate.weight": (widths[gate], 16),
            "up.1.attention.attention.gate.weight": (widths[gate], 16),
        }


def test_patch_in_a_language_model_is_a_located_error() -> None:
    text = "experiment tiny {}\ndata text {}\nmodel transformer { patch = 4 }\n"
    text += "objective next_token {}\n"
    message = error_text(text)
    assert "`model.patch` applies to `model transformer` only as an image denoiser" in message
    assert "test.exp:3:" in message


def test_dit_rules_point_at_the_field() -> None:
    message = error_text(DIT.replace("patch = 2", "patch = 3"))
    assert "image size 8 is not divisible by patch 3" in message and "test.exp:3:" in message
    message = error_text(DIT.replace("patch = 2", "patch = 2 norm_layout = sandwich"))
    assert "`model.norm_layout = sandwich` is not implemented" in message
    message = error_text(DIT.replace("patch = 2", "patch = 2 rope_base = 500"))
    assert "`model.rope_base` applies to `model transformer` only as a sequence model" in message
