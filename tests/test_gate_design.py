"""The Gated Attention design space: gate positions and granularities, activations, norm
layouts, the fused Triton kernel (under Triton's interpreter), stability counting and the
cuda target."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import MINIMAL, compile_text, import_generated, run_cli, smoke_dir
from reference import reference_attention

from expc.compiler.pipeline import compile_path
from expc.runtime import SpikeCounter, read_metrics

DESIGN = (
    MINIMAL.replace("width = 16", "width = 32").replace("heads = 2", "heads = 4")
    + "metrics = [val_loss, gate_score]\n"
    + "variant vanilla { model.attention.gate = none }\n"
    + "variant g1 { model.attention.gate = elementwise }\n"
    + "variant g1_silu { model.attention.gate = headwise model.attention.gate_activation = silu }\n"
    + "variant g2 { model.attention.gate = elementwise model.attention.gate_position = value }\n"
    + "variant post { model.norm_layout = post }\n"
    + "variant sandwich { model.norm_layout = sandwich }\n"
)


@pytest.fixture(scope="module")
def design(tmp_path_factory: pytest.TempPathFactory):
    return import_generated(compile_text(DESIGN).files, tmp_path_factory.mktemp("design"))


@pytest.fixture(scope="module")
def cuda_package(tmp_path_factory: pytest.TempPathFactory):
    files = compile_path(Path("specs/gated_attention_cuda.exp")).files
    model, train = import_generated(files, tmp_path_factory.mktemp("cuda"))
    import importlib

    kernels = importlib.import_module(model.__name__.rsplit(".", 1)[0] + ".kernels")
    return model, train, kernels


@pytest.mark.parametrize(
    "gate,position,act",
    [
        ("elementwise", "sdpa", "sigmoid"),
        ("headwise", "sdpa", "silu"),
        ("elementwise", "value", "sigmoid"),
        ("none", "sdpa", "sigmoid"),
    ],
)
def test_gate_positions_and_activations(design, gate: str, position: str, act: str) -> None:
    model_module, _ = design
    torch.manual_seed(0)
    config = model_module.ModelConfig(
        width=32,
        heads=4,
        attention_gate=gate,
        attention_gate_position=position,
        attention_gate_activation=act,
    )
    attn = model_module.CausalSelfAttention(config)
    x = torch.randn(2, 6, 32)
    rope = model_module.rope_tables(6, 8, config.rope_base, x.device)
    expected = reference_attention(attn, x, rope, gate, position, act)
    torch.testing.assert_close(attn(x, rope), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layout", ["pre", "post", "sandwich"])
def test_norm_layouts(design, layout: str) -> None:
    model_module, _ = design
    torch.manual_seed(0)
    block = model_module.Block(model_module.ModelConfig(width=32, heads=4, norm_layout=layout))
    x = torch.randn(2, 5, 32)
    rope = model_module.rope_tables(5, 8, 10000.0, x.device)
    attn = lambda h: block.attn(h, rope)  # noqa: E731
    if layout == "pre":
        h = x + attn(block.attn_norm(x))
        expected = h + block.mlp(block.mlp_norm(h))
    elif layout == "post":
        h = block.attn_norm(x + attn(x))
        expected = block.mlp_norm(h + block.mlp(h))
    else:
        h = x + block.attn_out_norm(attn(block.attn_norm(x)))
        expected = h + block.mlp_out_norm(block.mlp(block.mlp_norm(h)))
        assert sum("out_norm" in n for n, _ in block.named_parameters()) == 2
    torch.testing.assert_close(block(x, rope), expected)


def test_runs_table_carries_the_design_space(design) -> None:
    _, train = design
    assert train.RUNS["g2"].model.attention_gate_position == "value"
    assert train.RUNS["g1_silu"].model.attention_gate_activation == "silu"
    assert train.RUNS["sandwich"].model.norm_layout == "sandwich"


@pytest.mark.parametrize("granularity", ["elementwise", "headwise"])
@pytest.mark.parametrize("activation", ["sigmoid", "silu"])
@pytest.mark.parametrize("shape", [(2, 3, 4, 8), (1, 13, 3, 5), (3, 7, 1, 7), (1, 1, 1, 1)])
def test_triton_gate_kernel_matches_eager(cuda_package, granularity, activation, shape) -> None:
    _, _, kernels = cuda_package
    torch.manual_seed(sum(shape))
    y = torch.randn(*shape, requires_grad=True)
    logit_shape = shape if granularity == "elementwise" else (*shape[:-1], 1)
    logits = torch.randn(*logit_shape, requires_grad=True)
    # The kernel sees the SDPA output as the model gives it: a non-contiguous transpose.
    y_strided = y.transpose(1, 2).contiguous().transpose(1, 2)
    out = kernels.gated_output(y_strided, logits, activation)
    act = torch.sigmoid if activation == "sigmoid" else F.silu
    expected = y * act(logits)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    grad = torch.randn_like(expected)
    dy, dl = torch.autograd.grad(out, (y, logits), grad)
    dy_ref, dl_ref = torch.autograd.grad(expected, (y, logits), grad)
    torch.testing.assert_close(dy, dy_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(dl, dl_ref, rtol=1e-4, atol=1e-5)


def test_triton_gate_kernel_in_bf16(cuda_package) -> None:
    _, _, kernels = cuda_package
    y = torch.randn(2, 5, 3, 8).bfloat16()
    logits = torch.randn(2, 5, 3, 8).bfloat16()
    out = kernels.gated_output(y, logits, "sigmoid")
    assert out.dtype == torch.bfloat16
    expected = (y.float() * torch.sigmoid(logits.float())).bfloat16()
    torch.testing.assert_close(out, expected, rtol=1e-2, atol=1e-2)


def test_model_with_kernel_equals_eager_model(cuda_package) -> None:
    model_module, train, _ = cuda_package
    torch.manual_seed(0)
    config = model_module.ModelConfig(layers=2, width=32, heads=2, attention_gate="elementwise")
    model = model_module.Transformer(config)
    tokens = torch.randint(0, 256, (2, 9))
    fused_logits, fused_loss = model(tokens, tokens)  # training path: the Triton kernel
    probe = model_module.Probe()
    eager_logits, eager_loss = model(tokens, tokens, probe=probe)  # eager formula
    torch.testing.assert_close(fused_logits, eager_logits, rtol=1e-5, atol=1e-5)
    fused_loss.backward()
    assert model.blocks[0].attn.gate.weight.grad is not None


def test_spike_counter() -> None:
    counter = SpikeCounter(factor=1.5, window=4)
    flags = [counter.update(v) for v in [2.0, 2.0, 2.0, 2.0, 2.9, 3.1, 2.0, float("nan"), 2.0]]
    assert flags == [False, False, False, False, False, True, False, True, False]
    assert counter.count == 2 and counter.steps == [6, 8]


def test_cuda_target_without_gpu_is_a_clear_error(tmp_path: Path) -> None:
    result = run_cli("run", "specs/gated_attention_cuda.exp", "--smoke", "--out", tmp_path)
    assert result.exit_code == 1
    assert "targets `cuda`, but PyTorch sees no GPU" in result.output
    assert "--device cpu" in result.output
    assert not smoke_dir(tmp_path, "gated_attention_cuda").exists()  # no work started


@pytest.mark.slow
def test_cuda_spec_runs_on_cpu_with_device_override(tmp_path: Path) -> None:
    """bf16 autocast, torch.compile (inductor on CPU) and the Triton kernel, end to end."""
    result = run_cli(
        "run", "specs/gated_attention_cuda.exp", "--smoke", "--device", "cpu", "--out", tmp_path
    )
    assert result.exit_code == 0, result.output
    rows = read_metrics(smoke_dir(tmp_path, "gated_attention_cuda") / "gated")
    assert rows and math.isfinite(rows[-1]["val_loss"]) and "val_loss_x4" in rows[-1]


def test_design_space_smoke_run_reports_long_context_and_maps(tmp_path: Path) -> None:
    result = run_cli(
        "run", "specs/gate_design_space.exp", "--smoke", "--variant", "g2_value", "--out", tmp_path
    )
    assert result.exit_code == 0, result.output
    run_dir = smoke_dir(tmp_path, "gate_design_space") / "g2_value-seed_1337"
    row = read_metrics(run_dir)[-1]
    assert {"val_loss_x2", "val_loss_x4", "gate_score"} <= set(row)
    assert (run_dir / "attention_maps.png").stat().st_size > 5000
    assert "attention_maps.png" in (run_dir.parent / "report.md").read_text()


def test_generated_kernels_run_interpreted_on_a_machine_without_a_gpu() -> None:
    """`python -m generated.<cuda spec>.train --device cpu` needs no TRITON_INTERPRET by hand."""
    import os
    import subprocess
    import sys

    code = (
        "import torch\n"
        "from generated.gated_attention_cuda.kernels import gated_output\n"
        "y, g = torch.randn(2, 3, 2, 8), torch.randn(2, 3, 2, 8)\n"
        "torch.testing.assert_close(gated_output(y, g), y * torch.sigmoid(g))\n"
        "print('interpreted ok')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the kernel is compiled, not interpreted")
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "interpreted ok" in done.stdout
