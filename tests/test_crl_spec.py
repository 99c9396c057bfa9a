"""The CRL backend end to end: the generated residual MLPs, a smoke run of
specs/crl_depth.exp through the CLI, exact resume, the depth report, and learning."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import compile_text, experiment_dir, import_generated, run_cli, smoke_dir

from expc.compiler import compile_path
from expc.runtime import read_metrics
from expc.runtime.crl.report import collect

SPEC = "specs/crl_depth.exp"
TINY = """\
experiment crl_tiny {}
data maze { num_envs = 4 eval_envs = 2 episode_length = 6 }
model residual_mlp { depth = 8 width = 8 representation = 5 }
objective crl {}
train {
  steps = 6
  batch_size = 8
  prefill = 6
  unroll_length = 3
  updates_per_unroll = 2
  eval_every = 2
}
"""


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory):
    return import_generated(compile_path(Path(SPEC)).files, tmp_path_factory.mktemp("crl"))


def reference_block(block: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The paper's residual_block, written out with functional ops."""
    h = x
    for layer in block.layers:
        h = F.linear(h, layer.dense.weight, layer.dense.bias)
        h = F.layer_norm(h, (h.shape[-1],), layer.norm.weight, layer.norm.bias)
        h = h * torch.sigmoid(h)  # swish
    return x + h


@pytest.mark.parametrize("depth", [4, 8, 64])
def test_depth_counts_dense_layers_in_residual_blocks(generated, depth: int) -> None:
    model_module, train_module = generated
    config = train_module.RUNS[f"u_maze-depth_{depth}"].model
    assert config.depth == depth
    encoder = model_module.Encoder(6, config)
    dense = [m for m in encoder.modules() if isinstance(m, torch.nn.Linear)]
    blocks = encoder.trunk.blocks
    assert len(blocks) == depth // 4
    assert all(len(block.layers) == 4 for block in blocks)
    assert len(dense) == 1 + depth + 1  # stem + depth in the blocks + head
    norms = [m for m in encoder.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert len(norms) == 1 + depth
    width, rep = config.width, config.representation
    expected = (6 * width + width + 2 * width) + depth * (width * width + 3 * width)
    expected += width * rep + rep
    assert sum(p.numel() for p in encoder.parameters()) == expected


def test_residual_block_is_four_dense_norm_swish_then_skip(generated) -> None:
    model_module, train_module = generated
    torch.manual_seed(0)
    block = model_module.ResidualBlock(train_module.RUNS["u_maze-depth_4"].model)
    for p in block.parameters():  # move norms away from the identity
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randn(5, block.layers[0].dense.in_features)
    assert torch.allclose(block(x), reference_block(block, x), atol=1e-6)
    # The skip adds the input itself: zeroing the last layer's norm gain leaves x + 0.
    torch.nn.init.zeros_(block.layers[-1].norm.weight)
    torch.nn.init.zeros_(block.layers[-1].norm.bias)
    assert torch.allclose(block(x), x)


def test_dense_init_follows_the_paper(generated) -> None:
    model_module, _ = generated
    torch.manual_seed(0)
    layer = model_module.dense(100, 400)
    bound = 1 / math.sqrt(100)
    assert layer.weight.abs().max() <= bound and layer.weight.abs().max() > 0.95 * bound
    assert torch.equal(layer.bias, torch.zeros(400))
    # U(-b, b) has variance b^2 / 3 = 1/3 / fan_in: variance_scaling(1/3, fan_in, uniform).
    assert layer.weight.var().item() == pytest.approx(1 / 300, rel=0.05)


def test_agent_shapes_and_actor_log_std_range(generated) -> None:
    model_module, train_module = generated
    agent = model_module.Agent(4, 2, 2, train_module.RUNS["big_maze-depth_16"].model)
    obs, action, goal = torch.randn(7, 4), torch.rand(7, 2) * 2 - 1, torch.randn(7, 2)
    sa, g = agent.critic(obs, action, goal)
    assert sa.shape == g.shape == (7, 64)
    mean, log_std = agent.actor(obs * 100, goal)
    assert mean.shape == log_std.shape == (7, 2)
    assert (log_std >= -5).all() and (log_std <= 2).all()
    assert agent.log_alpha.item() == 0.0
    assert {n for n, _ in agent.named_children()} == {"actor", "critic"}


def test_actor_critic_and_temperature_learning_rates_default_to_lr(generated) -> None:
    import dataclasses

    model_module, train_module = generated
    run = train_module.RUNS["u_maze-depth_4"]
    agent = model_module.Agent(4, 2, 2, run.model)

    def rates(train) -> dict[str, float]:  # noqa: ANN001
        optimizers = train_module.make_optimizers(agent, train)
        return {name: opt.param_groups[0]["lr"] for name, opt in optimizers.items()}

    assert rates(run.train) == dict.fromkeys(("actor", "critic", "alpha"), run.train.lr)
    own = dataclasses.replace(run.train, alpha_lr=3e-3, critic_lr=1e-3)
    assert rates(own) == {"actor": run.train.lr, "critic": 1e-3, "alpha": 3e-3}


def test_the_actor_takes_its_own_depth_when_set(generated) -> None:
    import dataclasses

    model_module, train_module = generated
    config = train_module.RUNS["u_maze-depth_16"].model
    assert config.actor_depth == -1
    tied = model_module.Agent(4, 2, 2, config)
    assert len(tied.actor.trunk.blocks) == len(tied.critic.sa_encoder.trunk.blocks) == 4
    own = model_module.Agent(4, 2, 2, dataclasses.replace(config, actor_depth=4))
    assert len(own.actor.trunk.blocks) == 1
    assert len(own.critic.sa_encoder.trunk.blocks) == len(own.critic.g_encoder.trunk.blocks) == 4


def test_block_layout_variants_generate_their_own_code(tmp_path: Path) -> None:
    text = TINY.replace(
        "model residual_mlp { depth = 8 width = 8 representation = 5 }",
        "model residual_mlp { depth = 6 block_layers = 3 width = 8 norm = none activation = relu }",
    )
    text += "variant plain { model.skip = false }\nvariant residual { model.skip = true }\n"
    compiled = compile_text(text)
    model_text = compiled.files["crl_tiny/model.py"]
    assert "LayerNorm" not in model_text and "F.relu" in model_text and "F.silu" not in model_text
    assert "if self.skip" in model_text  # skip differs between runs: a typed field
    model_module, train_module = import_generated(compiled.files, tmp_path)
    for name, skip in (("plain", False), ("residual", True)):
        config = train_module.RUNS[name].model
        block = model_module.ResidualBlock(config)
        assert len(block.layers) == 3
        x = torch.randn(4, 8)
        h = x
        for layer in block.layers:
            h = F.relu(layer.dense(h))
        assert torch.allclose(block(x), x + h if skip else h)
        assert len(model_module.Trunk(4, config, config.depth).blocks) == 2


def test_smoke_run_through_the_cli(tmp_path: Path) -> None:
    names = ["u_maze-depth_4", "u_maze-depth_8", "big_maze-depth_4"]  # one u_maze series
    args = [a for n in names for a in ("--variant", n)]
    result = run_cli("run", SPEC, "--smoke", "--out", tmp_path, *args)
    assert result.exit_code == 0, result.output
    experiment = smoke_dir(tmp_path, "crl_depth")
    for name in names:
        rows = read_metrics(experiment / name)
        assert [r["step"] for r in rows] == [2, 4]
        # prefill 10 + two unrolls of 5, over 8 environments.
        assert [r["env_steps"] for r in rows] == [120, 160]
        for row in rows:
            assert 0.0 <= row["success_rate"] <= 1.0
            assert 0.0 <= row["time_at_goal"] <= 10  # smoke episodes last 10 steps
            assert 0.0 <= row["categorical_accuracy"] <= 1.0
            assert math.isfinite(row["critic_loss"]) and row["critic_loss"] > 0
            assert row["alpha"] == pytest.approx(1.0, abs=0.01)  # 4 Adam steps of 3e-4
            assert row["env_steps_per_s"] > 0
        config = json.loads((experiment / name / "config.json").read_text())
        assert config["train"]["steps"] == 4 and config["model"]["width"] == 16
    assert (
        json.loads((experiment / "big_maze-depth_4" / "config.json").read_text())["data"]["task"]
        == "big_maze"
    )
    report = (experiment / "report.md").read_text()
    assert "## Depth scaling" in report
    assert report.index("`u_maze`") < report.index("`big_maze`")  # the spec's order
    assert "| 8 |" in report.split("`big_maze`")[0]
    assert (experiment / "depth_scaling.png").stat().st_size > 1000
    series = collect(experiment)
    assert sorted(series["u_maze"]) == [4, 8] and sorted(series["big_maze"]) == [4]


class Interrupt(Exception):
    pass


class StopAfter:
    """A progress stand-in that interrupts training after `steps` steps (a crash)."""

    def __init__(self, steps: int):
        self.left = steps

    def advance(self, loss: float | None = None, steps: int = 1) -> None:
        self.left -= steps
        if self.left < 0:
            raise Interrupt


def test_resume_continues_exactly(tmp_path: Path) -> None:
    compiled = compile_text(TINY)
    _, train_module = import_generated(compiled.files, tmp_path / "pkg")
    run = train_module.RUNS["main"]
    straight = train_module.train(run, tmp_path / "straight")
    with pytest.raises(Interrupt):  # dies during step 4, after the checkpoint of step 2
        train_module.train(run, tmp_path / "resumed", progress=StopAfter(3))
    resumed = train_module.train(run, tmp_path / "resumed", resume=True)
    timing = {"elapsed_s", "env_steps_per_s"}
    rows_a = read_metrics(tmp_path / "straight")
    rows_b = read_metrics(tmp_path / "resumed")
    assert [r["step"] for r in rows_b] == [2, 4, 6]
    for a, b in zip(rows_a, rows_b, strict=True):
        assert {k: v for k, v in a.items() if k not in timing} == {
            k: v for k, v in b.items() if k not in timing
        }
    assert {k: v for k, v in straight.items() if k not in timing} == {
        k: v for k, v in resumed.items() if k not in timing
    }


@pytest.mark.slow
def test_shallow_network_learns_the_u_maze(tmp_path: Path) -> None:
    """~1 min: the first 750 gradient steps of the spec's depth-4 U-maze run reach the goal
    far more often than the untrained actor (0.06) does."""
    result = run_cli(
        "run", SPEC, "--variant", "u_maze-depth_4", "--out", tmp_path, "--set", "train.steps=750"
    )
    assert result.exit_code == 0, result.output
    experiment = experiment_dir(tmp_path, "crl_depth", None, ["train.steps=750"])
    rows = read_metrics(experiment / "u_maze-depth_4")
    assert [r["step"] for r in rows] == [250, 500, 750]
    assert rows[-1]["success_rate"] > 0.3
    assert rows[-1]["categorical_accuracy"] > 4 / 256  # well above chance (1/batch)
