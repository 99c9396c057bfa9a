"""Components combine by declaration: what fits which objective, one target rule for all,
target settings that vary between runs, and the crashes of crossed features now fixed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import (
    MINIMAL,
    compile_text,
    error_text,
    experiment_dir,
    import_generated,
    run_cli,
    smoke_dir,
)

from expc.compiler import components
from expc.compiler.components import registry


def test_the_table_of_what_fits_each_objective() -> None:
    table = {kind: (families, data) for kind, families, data in components.compatibility()}
    assert table["next_token"][0].split(", ")[0] == "transformer"
    assert "transformer" in table["rlvr"][0]
    assert table["crl"] == ("residual_mlp", "maze")
    assert "unet" in table["diffusion"][0] and "shapes" in table["diffusion"][1]
    assert table["hivemind"] == ("generators, pretrained", "prompts")


def test_every_objective_config_takes_exactly_the_components_that_fit() -> None:
    for objective in components.all_objectives().values():
        config = components.config_class(objective)
        assert config.__name__.endswith("Config")
        families = set(registry.families_for(objective))
        for family, architecture in registry.all_architectures().items():
            assert (family in families) == (objective.needs in architecture.provides)


def test_a_family_that_exists_but_does_not_fit_names_what_fits() -> None:
    text = MINIMAL.replace("objective next_token {}", "objective crl {}")
    text = text.replace("data text { context = 16 }", "data maze {}")
    text = text.replace("train { steps = 2 batch_size = 2 eval_every = 1 eval_batches = 1 }", "")
    message = error_text(text)
    assert "model family `transformer` does not fit `objective crl`" in message
    assert "these fit: `model residual_mlp`" in message
    assert "unknown model family" not in message


@pytest.mark.parametrize("objective", ["hivemind"])
def test_ddp_on_an_objective_without_it_is_one_located_error(objective: str) -> None:
    specs = {
        "rlvr": "experiment r {}\ndata arithmetic {}\nmodel transformer {}\nobjective rlvr {}\n",
        "hivemind": 'experiment h {}\nmodel generators { jsonl = ["a.jsonl"] }\n'
        "objective hivemind {}\n",
        "crl": "experiment c {}\ndata maze {}\nmodel residual_mlp {}\nobjective crl {}\n",
        "diffusion": "experiment d {}\ndata shapes {}\nmodel unet {}\nobjective diffusion {}\n",
    }
    message = error_text(specs[objective] + "target cpu { strategy = ddp devices = 2 }\n")
    assert f"`objective {objective}` does not support `target.strategy = ddp`" in message
    assert "test.exp:" in message and "Traceback" not in message


def test_bf16_on_hivemind_is_refused_not_silently_dropped() -> None:
    text = 'experiment h {}\nmodel generators { jsonl = ["a.jsonl"] }\nobjective hivemind {}\n'
    message = error_text(text + "target cpu { precision = bf16 }\n")
    assert "`objective hivemind` does not support `target.precision = bf16`" in message


def test_a_structural_difference_points_at_the_variant_line() -> None:
    text = MINIMAL + "variant plain {}\nvariant mapped {\n  eval.attention_maps = true\n}\n"
    message = error_text(text)
    assert "`eval.attention_maps` cannot differ between runs" in message
    assert "test.exp:12:" in message


def test_a_role_field_outside_its_role_is_an_error_and_leaves_no_code() -> None:
    """`patch` means something only for a transformer used as an image denoiser."""
    message = error_text(MINIMAL.replace("  heads = 2\n", "  heads = 2\n  patch = 4\n"))
    assert "`model.patch` applies to `model transformer` only as an image denoiser" in message
    assert "test.exp:7:11" in message
    language_model = compile_text(MINIMAL).files["tiny/model.py"]
    assert "patch" not in language_model  # nor in the generated config of other roles


def test_precision_and_compile_may_differ_between_variants(tmp_path: Path) -> None:
    text = MINIMAL + (
        "variant fp32 {}\n"
        "variant bf16 { target.precision = bf16 }\n"
        "variant compiled { target.compile = true }\n"
    )
    files = compile_text(text).files
    train = files["tiny/train.py"]
    # Each run's own precision (runtime.Precision autocasts the steps; evaluation too).
    assert "runtime.Precision(run.target.precision, target)" in train
    assert "with self.precision.autocast():" in train
    assert "torch.compile(self.model) if run.target.compile else self.model" in train
    # Only the fp32 and bf16 runs are trained here (torch.compile takes ~10 s on CPU).
    spec = tmp_path / "mixed.exp"
    spec.write_text(text)
    result = run_cli(
        "run", spec, "--variant", "fp32", "--variant", "bf16",
        "--out", tmp_path / "runs", "--generated", tmp_path / "generated",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = {
        name: [
            json.loads(line)
            for line in (tmp_path / "runs" / "tiny" / name / "metrics.jsonl").open()
        ]
        for name in ("fp32", "bf16")
    }
    fp32, bf16 = rows["fp32"][-1]["val_loss"], rows["bf16"][-1]["val_loss"]
    assert fp32 != bf16 and abs(fp32 - bf16) < 0.05  # the same run, rounded differently


def test_triton_kernels_without_probe_metrics_generate_runnable_code(tmp_path: Path) -> None:
    text = (
        MINIMAL.replace("  heads = 2\n", "  heads = 2\n  attention { gate = elementwise }\n")
        + "target cpu { kernels = triton }\nmetrics = [train_loss, val_loss]\n"
    )
    files = compile_text(text).files
    assert "probe" not in files["tiny/model.py"]
    model_module, train_module = import_generated(files, tmp_path / "pkg")
    run = train_module.RUNS["main"]
    row = train_module.train(run, tmp_path / "out")
    assert row["step"] == 2 and row["val_loss"] > 0


BF16_SPECS = {
    "crl": "experiment crlmix {}\ndata maze {}\nmodel residual_mlp { depth = 4 width = 32 }\n"
    "objective crl {}\n",
    "diffusion": "experiment diffmix {}\ndata shapes { n = 16 held_out = 64 size = 8 }\n"
    "model unet { width = 16 }\nobjective diffusion {}\n",
    "rlvr": "experiment rlvrmix {}\ndata arithmetic {}\n"
    "model transformer { layers = 1 width = 16 heads = 2 }\nobjective rlvr {}\n",
}


def _experiment(objective: str) -> str:
    """The experiment name of BF16_SPECS[objective]."""
    return BF16_SPECS[objective].split()[1]


@pytest.mark.parametrize("objective", sorted(BF16_SPECS))
def test_bf16_variant_trains_beside_fp32(objective: str, tmp_path: Path) -> None:
    """bf16 autocast wraps each objective's step; the run stays close to its fp32 twin."""
    spec = tmp_path / "mixed.exp"
    variants = "variant fp32 {}\nvariant bf16 { target.precision = bf16 }\n"
    spec.write_text(BF16_SPECS[objective] + variants)
    result = run_cli(
        "run", spec, "--smoke", "--out", tmp_path / "runs", "--generated", tmp_path / "generated"
    )
    assert result.exit_code == 0, result.output
    experiment = smoke_dir(tmp_path / "runs", _experiment(objective))
    last = {
        name: json.loads((experiment / name / "metrics.jsonl").read_text().splitlines()[-1])
        for name in ("fp32", "bf16")
    }
    assert "diverged" not in last["bf16"]
    assert last["fp32"]["step"] == last["bf16"]["step"]


def _run(spec: Path, out: Path, *extra: str) -> None:
    import subprocess
    import sys

    command = [sys.executable, "-m", "expc", "run", str(spec), "--out", str(out)]
    command += ["--generated", str(spec.parent / "generated"), *extra]
    result = subprocess.run(command, cwd=spec.parent, capture_output=True, text=True)
    # A failed run's own log is what says why (a rank's traceback, a gloo abort).
    logs = "".join(f"\n--- {log}\n{log.read_text()[-4000:]}" for log in out.rglob("job.log"))
    assert result.returncode == 0, result.stdout + result.stderr + logs


def _rows(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def _two_ranks_and_one(spec: Path, experiment: str) -> list[Path]:
    """Train the DDP spec with 2 ranks, then with 1 (the same global batch); their run folders."""
    _run(spec, spec.parent / "two")
    _run(spec, spec.parent / "one", "--set", "target.devices=1")
    return [  # the --set run has an experiment folder of its own
        spec.parent / "two" / experiment / "main",
        experiment_dir(spec.parent / "one", experiment, None, ["target.devices=1"]) / "main",
    ]


def test_rlvr_ddp_pretrains_as_one_rank_does_and_rank_0_logs(tmp_path: Path) -> None:
    """torchrun + gloo: 2 ranks sharing each demonstration batch reach the stage-1 weights of
    1 rank with the whole batch; GRPO then samples each rank's own rollouts."""
    import torch

    spec = tmp_path / "rlvr_ddp.exp"
    spec.write_text(
        "experiment rlvr_ddp {}\n"
        "data arithmetic { operands = 2 digits = 2 }\n"
        "model transformer { layers = 1 width = 16 heads = 2 }\n"
        "objective rlvr { group_size = 4 }\n"
        "train {\n  pretrain { steps = 6 batch_size = 8 eval_every = 3 }\n"
        "  rl { steps = 2 prompts = 4 eval_every = 1 }\n}\n"
        "eval { problems = 4 samples = 4 track_samples = 2 }\n"
        "target cpu { strategy = ddp devices = 2 }\n"
    )
    runs = _two_ranks_and_one(spec, "rlvr_ddp")
    bases = [torch.load(r / "pretrain.pt", weights_only=False)["model"] for r in runs]
    for key, value in bases[0].items():
        torch.testing.assert_close(value, bases[1][key], rtol=1e-5, atol=1e-6)
    two, one = _rows(runs[0]), _rows(runs[1])
    assert [r["step"] for r in two] == [3, 6, 7, 8]  # rank 0 alone logs
    for a, b in zip(two[:2], one[:2], strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
    assert (runs[0] / "passk.json").is_file()


def test_crl_ddp_two_ranks_reach_the_weights_of_one_rank(tmp_path: Path) -> None:
    """2 ranks, each with half of every batch's rows contrasted against all goals, end
    where 1 rank with the whole batch ends; the metrics come from rank 0 alone."""
    import torch

    spec = tmp_path / "crl_ddp.exp"
    spec.write_text(
        "experiment crl_ddp {}\n"
        "data maze { num_envs = 8 eval_envs = 4 episode_length = 10 }\n"
        "model residual_mlp { depth = 4 width = 32 }\n"
        "objective crl {}\n"
        "train { steps = 6 batch_size = 16 prefill = 10 unroll_length = 5\n"
        "  updates_per_unroll = 2 eval_every = 3 }\n"
        "target cpu { strategy = ddp devices = 2 }\n"
        "metrics = [success_rate, critic_loss, categorical_accuracy, actor_loss, alpha]\n"
    )
    runs = _two_ranks_and_one(spec, "crl_ddp")
    states = [torch.load(r / "checkpoint.pt", weights_only=False)["model"] for r in runs]
    for key, value in states[0].items():
        torch.testing.assert_close(value, states[1][key], rtol=1e-5, atol=1e-6)
    two, one = _rows(runs[0]), _rows(runs[1])
    assert [r["step"] for r in two] == [3, 6]
    for a, b in zip(two, one, strict=True):
        for key in ("critic_loss", "actor_loss", "alpha", "categorical_accuracy"):
            assert a[key] == pytest.approx(b[key], rel=1e-5), key


def test_next_token_trains_on_arithmetic_demonstrations(tmp_path: Path) -> None:
    """`data arithmetic` yields text too: a language model learns its worked solutions."""
    spec = tmp_path / "lm_arith.exp"
    spec.write_text(
        "experiment lm_arith {}\n"
        "data arithmetic { demonstrations = 2000 context = 32 }\n"
        "model transformer { layers = 1 width = 32 heads = 2 }\n"
        "objective next_token {}\n"
        "train { steps = 40 batch_size = 8 lr = 3e-3 warmup = 5\n"
        "  eval_every = 20 eval_batches = 2 }\n"
    )
    result = run_cli("run", spec, "--out", tmp_path / "runs", "--generated", tmp_path / "gen")
    assert result.exit_code == 0, result.output
    rows = _rows(tmp_path / "runs" / "lm_arith" / "main")
    assert rows[-1]["val_loss"] < rows[0]["val_loss"] < 5.6  # below uniform (ln 256 = 5.55)
    assert "rlvr.demonstration_tokens" in (tmp_path / "gen" / "lm_arith" / "train.py").read_text()


def test_a_data_field_of_another_role_is_refused() -> None:
    """`context` is arithmetic's only as text; an rlvr spec reads problems, not windows."""
    text = (
        "experiment r {}\ndata arithmetic { context = 32 }\nmodel transformer {}\n"
        "objective rlvr {}\n"
    )
    message = error_text(text)
    assert "`data.context` applies to `data arithmetic` only as text" in message
    assert "test.exp:2:29" in message


def test_residual_mlp_norms_combine_in_one_spec(tmp_path: Path) -> None:
    text = (
        "experiment crlnorm {}\ndata maze {}\nmodel residual_mlp { depth = 4 width = 32 }\n"
        "objective crl {}\nvariant layernorm {}\nvariant rmsnorm { model.norm = rmsnorm }\n"
        "variant plain { model.norm = none }\n"
    )
    files = compile_text(text).files
    model_module, train_module = import_generated(files, tmp_path / "pkg")
    import torch

    kinds = {}
    for name in ("layernorm", "rmsnorm", "plain"):
        layer = model_module.Layer(32, train_module.RUNS[name].model)
        kinds[name] = type(layer.norm)
        assert layer(torch.randn(3, 32)).shape == (3, 32)
    assert kinds == {
        "layernorm": torch.nn.LayerNorm,
        "rmsnorm": torch.nn.RMSNorm,
        "plain": torch.nn.Identity,
    }


def test_the_transformer_probe_measures_an_rlvr_policy(tmp_path: Path) -> None:
    """Probe metrics belong to the transformer: an RLVR policy reports them too."""
    spec = tmp_path / "rlvr_probe.exp"
    spec.write_text(
        "experiment rlvr_probe {}\ndata arithmetic {}\n"
        "model transformer { layers = 1 width = 16 heads = 2 attention { gate = headwise } }\n"
        "objective rlvr {}\n"
        "metrics = [train_loss, pass_at_1, first_token_attention, max_activation, gate_score]\n"
    )
    result = run_cli(
        "run", spec, "--smoke", "--out", tmp_path / "runs", "--generated", tmp_path / "gen"
    )
    assert result.exit_code == 0, result.output
    rows = _rows(smoke_dir(tmp_path / "runs", "rlvr_probe") / "main")
    for row in rows:
        assert 0.0 < row["first_token_attention"] <= 1.0
        assert 0.0 < row["gate_score"] < 1.0 and row["max_activation"] > 0.0


def test_diffusion_ddp_two_ranks_reach_the_weights_of_one_rank(tmp_path: Path) -> None:
    """Every rank draws the same images, timesteps and noise and trains on its shard."""
    import torch

    spec = tmp_path / "diff_ddp.exp"
    spec.write_text(
        "experiment diff_ddp {}\n"
        "data shapes { n = 16 held_out = 64 size = 8 }\n"
        "model unet { width = 16 }\n"
        "objective diffusion {}\n"
        "train { steps = 8 batch_size = 8 }\n"
        "eval { first_eval = 4 evaluations = 2 samples = 16 sampling_steps = 3 loss_images = 8 }\n"
        "target cpu { strategy = ddp devices = 2 }\n"
    )
    runs = _two_ranks_and_one(spec, "diff_ddp")
    states = [torch.load(r / "checkpoint.pt", weights_only=False) for r in runs]
    for part in ("model", "ema"):
        for key, value in states[0][part].items():
            if value.is_floating_point():  # Adam's moments and the EMA follow the same steps
                torch.testing.assert_close(value, states[1][part][key], rtol=1e-3, atol=1e-4)
    two, one = _rows(runs[0]), _rows(runs[1])
    assert [r["step"] for r in two] == [r["step"] for r in one] == [4, 8]
    for a, b in zip(two, one, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["test_denoising_loss"] == pytest.approx(b["test_denoising_loss"], rel=1e-3)


FINETUNE = MINIMAL.replace(
    "train { steps = 2 batch_size = 2 eval_every = 1 eval_batches = 1 }",
    "train {\n  steps = 6\n  batch_size = 4\n  eval_every = 3\n  eval_batches = 1\n"
    "  finetune {\n    steps = 6\n    batch_size = 2\n    lr = 1e-3\n    eval_every = 3\n"
    "    data arithmetic { demonstrations = 200 context = 12 }\n  }\n}",
)


class _CrashAfter:
    """A progress sink that raises after `steps` training steps: a crash mid-run."""

    def __init__(self, steps: int) -> None:
        self.left = steps

    def advance(self, steps: int = 1, loss: float | None = None) -> None:
        if loss is not None:
            self.left -= 1
            if self.left == 0:
                raise KeyboardInterrupt


def test_a_finetune_stage_starts_from_the_first_and_trains_on_its_own_data(
    tmp_path: Path,
) -> None:
    staged = compile_text(FINETUNE).files
    assert "def load_finetune_data(config: TrainConfig)" in staged["tiny/train.py"]
    _, train_module = import_generated(staged, tmp_path / "staged")
    run = train_module.RUNS["main"]
    assert train_module.total_steps(run) == 12 and run.train.finetune_data_context == 12
    train_module.train(run, tmp_path / "staged_out")
    rows = _rows(tmp_path / "staged_out")
    assert [(r["step"], r["stage"]) for r in rows] == [(3, 1), (6, 1), (9, 2), (12, 2)]
    assert rows[2]["tokens"] == 6 * 4 * 16 + 3 * 2 * 12  # stage 1's, then stage 2's windows
    # Stage 1 is the same run as a spec without the stage.
    single = MINIMAL.replace(
        "train { steps = 2 batch_size = 2 eval_every = 1 eval_batches = 1 }",
        "train { steps = 6 batch_size = 4 eval_every = 3 eval_batches = 1 }",
    )
    _, single_module = import_generated(compile_text(single).files, tmp_path / "single")
    single_module.train(single_module.RUNS["main"], tmp_path / "single_out")
    for a, b in zip(rows[:2], _rows(tmp_path / "single_out"), strict=True):
        assert a["val_loss"] == b["val_loss"] and a["train_loss"] == b["train_loss"]


def test_a_run_resumed_inside_the_finetune_stage_ends_as_an_uninterrupted_one(
    tmp_path: Path,
) -> None:
    _, train_module = import_generated(compile_text(FINETUNE).files, tmp_path / "pkg")
    run = train_module.RUNS["main"]
    train_module.train(run, tmp_path / "whole")
    with pytest.raises(KeyboardInterrupt):  # after step 10; the checkpoint is step 9's
        train_module.train(run, tmp_path / "resumed", progress=_CrashAfter(10))
    train_module.train(run, tmp_path / "resumed", resume=True)
    timeless = [{k: v for k, v in r.items() if k != "elapsed_s"} for r in _rows(tmp_path / "whole")]
    resumed = [
        {k: v for k, v in r.items() if k != "elapsed_s"} for r in _rows(tmp_path / "resumed")
    ]
    assert resumed == timeless


def test_a_finetune_stage_only_some_runs_have_is_refused() -> None:
    text = MINIMAL + "variant plain {}\nvariant tuned {\n  train.finetune.steps = 10\n}\n"
    message = error_text(text)
    assert "`train.finetune` and its `data` kind must be the same in every run" in message


def test_the_stage_data_union_is_every_kind_that_yields_text() -> None:
    from typing import get_args

    from expc.compiler.components.objectives import next_token

    union = get_args(get_args(next_token.TextSource)[0])
    fits = registry.data_for(components.for_objective("next_token"))
    assert set(union) == {source.node for source in fits.values()}


@pytest.mark.slow  # inductor compiles each network on the CPU: ~1 min
@pytest.mark.parametrize("objective", ["crl", "rlvr", "diffusion"])
def test_compiled_variant_trains_as_its_eager_twin(objective: str, tmp_path: Path) -> None:
    spec = tmp_path / "compiled.exp"
    variants = "variant eager {}\nvariant compiled { target.compile = true }\n"
    spec.write_text(BF16_SPECS[objective] + variants)
    result = run_cli(
        "run", spec, "--smoke", "--out", tmp_path / "runs", "--generated", tmp_path / "generated"
    )
    assert result.exit_code == 0, result.output
    experiment = smoke_dir(tmp_path / "runs", _experiment(objective))
    eager, compiled = (_rows(experiment / name) for name in ("eager", "compiled"))
    assert [r["step"] for r in eager] == [r["step"] for r in compiled]
    key = {"crl": "critic_loss", "rlvr": "train_loss", "diffusion": "train_loss"}[objective]
    for a, b in zip(eager, compiled, strict=True):
        if key in a:  # rlvr's stage-2 rows have no training loss
            assert a[key] == pytest.approx(b[key], rel=1e-3), key


def test_the_transformer_probe_measures_a_dit_denoiser(tmp_path: Path) -> None:
    """The probe metrics follow the transformer into objective diffusion."""
    spec = tmp_path / "dit_probe.exp"
    spec.write_text(
        "experiment dit_probe {}\ndata shapes { n = 16 held_out = 64 size = 8 }\n"
        "model transformer { layers = 1 width = 32 heads = 2 attention { gate = elementwise } }\n"
        "objective diffusion {}\n"
        "metrics = [train_loss, first_token_attention, max_activation, gate_score]\n"
    )
    result = run_cli(
        "run", spec, "--smoke", "--out", tmp_path / "runs", "--generated", tmp_path / "gen"
    )
    assert result.exit_code == 0, result.output
    rows = _rows(smoke_dir(tmp_path / "runs", "dit_probe") / "main")
    for row in rows:  # 16 patches: attention spread evenly would put 1/16 on patch 0
        assert 0.0 < row["first_token_attention"] < 1.0
        assert 0.0 < row["gate_score"] < 1.0 and row["max_activation"] > 0.0


@pytest.mark.parametrize("objective", sorted(BF16_SPECS))
def test_fp16_variant_trains_with_its_gradient_scaler(objective: str, tmp_path: Path) -> None:
    """fp16 is a CUDA setting; `--device cpu` runs its code path here (CPU autocast and a
    CPU GradScaler), a scaler shared by every optimiser of a step."""
    spec = tmp_path / "half.exp"
    variants = "target cuda {}\nvariant fp32 {}\nvariant fp16 { target.precision = fp16 }\n"
    spec.write_text(BF16_SPECS[objective] + variants)
    result = run_cli(
        "run", spec, "--smoke", "--device", "cpu",
        "--out", tmp_path / "runs", "--generated", tmp_path / "generated",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    experiment = smoke_dir(tmp_path / "runs", _experiment(objective))
    train = (tmp_path / "generated" / _experiment(objective) / "train.py").read_text()
    # The scaler: runtime.Precision's (runtime.fit's objectives) or the template's own.
    assert "runtime.Precision(run.target.precision, target)" in train or "GradScaler" in train
    last = {n: _rows(experiment / n)[-1] for n in ("fp32", "fp16")}
    assert "diverged" not in last["fp16"] and last["fp32"]["step"] == last["fp16"]["step"]


def test_triton_kernels_may_differ_between_variants(tmp_path: Path) -> None:
    """One package, two runs: the triton run's training steps call the fused gate."""
    text = MINIMAL.replace("  heads = 2\n", "  heads = 2\n  attention { gate = elementwise }\n")
    text += "variant eager {}\nvariant triton { target.kernels = triton }\n"
    files = compile_text(text).files
    assert "tiny/kernels.py" in files and "use_triton_kernels" in files["tiny/train.py"]
    model_module, train_module = import_generated(files, tmp_path / "pkg")
    calls = {"count": 0}
    fused = model_module.gated_output

    def counting(*args):  # noqa: ANN002, ANN202
        calls["count"] += 1
        return fused(*args)

    model_module.gated_output = counting
    rows = {}
    for name in ("eager", "triton"):
        calls["count"] = 0
        rows[name] = train_module.train(train_module.RUNS[name], tmp_path / name)
        # Two training steps and two evaluations (no probe metric: they take the kernel too).
        assert calls["count"] == (4 if name == "triton" else 0)
    assert rows["eager"]["val_loss"] == pytest.approx(rows["triton"]["val_loss"], rel=1e-5)
