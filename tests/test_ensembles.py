"""Vectorized ensembles (`target { ensemble = auto }`): a member is its standalone run.

A member must start from the standalone run's parameters, draw its batches, and reach its
losses within float tolerance; one member's divergence stops only that member; an
interrupted ensemble resumes to the uninterrupted result; `expc run` groups the runs that
differ only in seed or scalar settings, and each run folder is a standalone run's.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from expc.compiler.pipeline import compile_path
from expc.runtime.checkpoint import load_checkpoint
from expc.runtime.ensemble import Ensemble, ensemble_groups
from expc.runtime.errors import RunError

DIFFUSION = """\
experiment {name} {{ seeds = {seeds} }}
data shapes {{ n = 16 held_out = 64 size = 8 }}
model {model}
objective diffusion {{}}
train {{ steps = {steps} batch_size = 8 lr = 2e-3 {train} }}
eval {{ first_eval = 1 evaluations = {evaluations} samples = 16 sampling_steps = 3
  loss_images = 8 }}
target cpu {{ ensemble = auto threads = 1 }}
metrics = [{metrics}]
{extra}
"""


def _diffusion(name: str, **fields: object) -> str:
    """A diffusion spec's text: DIFFUSION with these fields, defaults for the others."""
    values = {
        "name": name,
        "model": "unet { width = 16 }",
        "steps": 50,
        "train": "",
        "evaluations": 50,
        "metrics": "train_loss",
        "extra": "",
        "seeds": 3,
        **fields,
    }
    return DIFFUSION.format(**values)


def _package(tmp_path: Path, name: str, **fields: object) -> object:
    """Compile a diffusion spec into tmp_path and import its train module."""
    return _compiled(tmp_path, name, _diffusion(name, **fields))


def _expc_run(tmp_path: Path, spec: Path, *flags: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "expc", "run", str(spec), "--out", str(tmp_path / "runs")]
    command += ["--generated", str(tmp_path / "generated"), *flags]
    return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)


def _compiled(tmp_path: Path, name: str, text: str) -> object:
    """Compile the spec `text` into tmp_path/generated and import its train module."""
    spec = tmp_path / f"{name}.exp"
    spec.write_text(text)
    for file, code in compile_path(spec).files.items():  # "NAME/train.py", ...
        (tmp_path / "generated" / file).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "generated" / file).write_text(code)
    sys.path.insert(0, str(tmp_path / "generated"))
    try:
        return importlib.import_module(f"{name}.train")
    finally:
        sys.path.remove(str(tmp_path / "generated"))


def _record_builds(
    monkeypatch: pytest.MonkeyPatch, train: object, network: str
) -> list[dict[str, torch.Tensor]]:
    """Every `network` the train module builds from now on, as its initial state dict, in
    the order built: the members' networks and the standalone runs' can then be compared."""
    built: list[dict[str, torch.Tensor]] = []

    class Recorded(getattr(train, network)):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)
            built.append({k: v.clone() for k, v in self.state_dict().items()})

    monkeypatch.setattr(train, network, Recorded)
    return built


def _rows(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def _losses(folder: Path) -> list[float]:
    return [row["train_loss"] for row in _rows(folder)]


@pytest.mark.parametrize(
    "model", ["unet { width = 16 }", "transformer { layers = 1 width = 32 heads = 2 patch = 2 }"]
)
def test_members_start_where_their_runs_start_and_match_them_over_50_steps(
    tmp_path: Path, model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every member (2 seeds x 2 learning rates) against its standalone run: the same
    initial parameters bit for bit, the same first batch (the step-1 loss agrees to float
    rounding), and per-step losses within float tolerance for 50 steps."""
    name = "unet_eq" if model.startswith("unet") else "dit_eq"
    train = _package(
        tmp_path,
        name,
        model=model,
        seeds=2,
        evaluations=10,
        extra="variant base {}\nvariant slow { train.lr = 5e-4 }",
    )
    runs = list(train.RUNS.values())
    assert len(runs) == 4  # 2 variants x 2 seeds, all in one ensemble (lr is per member)

    # Every network either loop builds, as it was built: the members' in the ensemble's
    # order, then the standalone runs'.
    network = "UNet" if model.startswith("unet") else "DiT"
    built = _record_builds(monkeypatch, train, network)
    # Each step's loss, as both loops report it to their progress sink.
    ensemble_steps = [_Steps() for _ in runs]
    alone_steps = [_Steps() for _ in runs]
    ensembled = tmp_path / "ensemble"
    train.train_ensemble(runs, [ensembled / r.name for r in runs], ensemble_steps)
    for run, steps in zip(runs, alone_steps, strict=True):
        train.train(run, tmp_path / "alone" / run.name, steps)
    members, alone = built[: len(runs)], built[len(runs) :]
    for run, mine, theirs in zip(runs, members, alone, strict=True):
        assert mine.keys() == theirs.keys()
        assert all(torch.equal(mine[k], theirs[k]) for k in mine), run.name
    for run, mine, theirs in zip(runs, ensemble_steps, alone_steps, strict=True):
        assert len(mine.losses) == len(theirs.losses) == 50
        assert mine.losses[0] == pytest.approx(theirs.losses[0], rel=1e-5), run.name
        assert mine.losses == pytest.approx(theirs.losses, rel=2e-3, abs=1e-4), run.name
        rows = _rows(ensembled / run.name), _rows(tmp_path / "alone" / run.name)
        assert [r["step"] for r in rows[0]] == [r["step"] for r in rows[1]]
    # The lr variant is its own run: its losses are not the base run's.
    assert ensemble_steps[0].losses != ensemble_steps[2].losses


class _Steps:
    """A progress sink that keeps every step's loss."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def advance(self, loss: float | None = None, steps: int = 1) -> None:
        if loss is not None:
            self.losses.append(loss)


def test_diverged_and_finished_members_stop_alone_and_the_others_go_on_as_standalone(
    tmp_path: Path,
) -> None:
    train = _package(
        tmp_path,
        "diverge",
        steps=12,
        evaluations=4,
        extra="variant huge { train.lr = 10 }\nvariant fine {}\nvariant short { train.steps = 6 }",
    )
    runs = [r for r in train.RUNS.values() if r.seed == 0]
    assert [(r.train.lr, r.train.steps) for r in runs] == [(10, 12), (2e-3, 12), (2e-3, 6)]
    folders = [tmp_path / "ens" / r.name for r in runs]
    train.train_ensemble(runs, folders)
    diverged = _rows(folders[0])
    assert diverged[-1].get("diverged") == 1 and diverged[-1]["step"] < 12
    # The others match their standalone runs, before and after the ensemble lost the
    # diverged member and the short one (it is stacked anew without them).
    for run, folder in zip(runs[1:], folders[1:], strict=True):
        train.train(run, tmp_path / "alone" / run.name)
        alone = tmp_path / "alone" / run.name
        assert _losses(folder) == pytest.approx(_losses(alone), rel=2e-3, abs=1e-4)
        assert _rows(folder)[-1]["step"] == run.train.steps


class _Interrupt(Exception):
    pass


class _StopAfter:
    """A progress sink that interrupts the process after `steps` steps of one member."""

    def __init__(self, steps: int) -> None:
        self.left = steps

    def advance(self, loss: float | None = None, steps: int = 1) -> None:
        if loss is None:
            return
        self.left -= 1
        if self.left < 0:
            raise _Interrupt


def _interrupted_and_resumed(
    train: object, tmp_path: Path, stop_after: int, checkpoint: int, keys: tuple[str, ...]
) -> list[Path]:
    """Train the runs as one ensemble whole, and again interrupted after `stop_after` steps
    of the first member (its last checkpoint at step `checkpoint`) and resumed: the rows
    agree. Returns the resumed runs' folders."""
    runs = list(train.RUNS.values())
    whole = [tmp_path / "whole" / r.name for r in runs]
    train.train_ensemble(runs, whole)
    cut = [tmp_path / "cut" / r.name for r in runs]
    with pytest.raises(_Interrupt):
        train.train_ensemble(runs, cut, [_StopAfter(stop_after)] + [None] * (len(runs) - 1))
    assert all(load_checkpoint(f / "checkpoint.pt")["step"] == checkpoint for f in cut)
    train.train_ensemble(runs, cut, resume=[True] * len(runs))
    for a, b in zip(whole, cut, strict=True):
        mine, theirs = _rows(a), _rows(b)
        assert [r["step"] for r in mine] == [r["step"] for r in theirs]
        assert all(any(key in row for row in mine) for key in keys)
        for row, other in zip(mine, theirs, strict=True):
            assert row.keys() == other.keys()
            for key in (k for k in keys if k in row):  # a stage's rows have its own keys
                assert row[key] == pytest.approx(other[key]), key
    return cut


def test_an_interrupted_ensemble_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    train = _package(tmp_path, "resumed", steps=10, evaluations=5, train="checkpoint_every = 4")
    cut = _interrupted_and_resumed(train, tmp_path, 6, 4, ("train_loss",))  # during step 7
    # A member's checkpoint is the standalone format: the standalone loop resumes from it.
    train.train(next(iter(train.RUNS.values())), cut[0], resume=True)
    assert _rows(cut[0])[-1]["step"] == 10


def test_expc_run_groups_runs_by_structure_and_writes_standalone_folders(tmp_path: Path) -> None:
    spec = tmp_path / "grouped.exp"
    spec.write_text(
        _diffusion(
            "grouped",
            model="unet { width = 8 groups = 4 }",
            steps=6,
            evaluations=2,
            metrics="train_loss, test_denoising_loss, memorization",
            extra="sweep width { model.width = [8, 16] }\n",
        ).replace("ensemble = auto", "ensemble = 2")
    )
    result = _expc_run(tmp_path, spec)
    assert result.returncode == 0, result.stdout + result.stderr
    # Width is structure: two ensembles per width, of at most 2 members (seeds 0, 1), then
    # seed 2 on its own.
    assert result.stdout.count("ensemble of 2 runs") == 2, result.stdout
    experiment = tmp_path / "runs" / "grouped"
    runs = sorted(p.name for p in experiment.iterdir() if p.is_dir())
    assert len(runs) == 6
    for run in runs:
        for file in ("config.json", "metrics.jsonl", "checkpoint.pt", "integrity.json"):
            assert (experiment / run / file).is_file(), (run, file)
        assert _rows(experiment / run)[-1]["step"] == 6
    assert (experiment / "report.md").is_file()
    again = _expc_run(tmp_path, spec)
    assert again.returncode == 0 and "ensemble of" not in again.stdout  # all up to date


def test_groups_split_on_structure_and_respect_the_cap() -> None:
    def config(seed: int, lr: float, width: int) -> dict:
        return {
            "name": f"r{seed}_{lr}_{width}",
            "seed": seed,
            "train": {"lr": lr},
            "model": {"width": width},
            "eval": {"samples": seed},
        }

    configs = {
        c["name"]: c
        for c in (config(s, lr, w) for w in (8, 16) for lr in (1.0, 2.0) for s in range(3))
    }
    groups = ensemble_groups(configs, ("seed", "train.lr", "eval"))
    assert [len(g) for g in groups] == [6, 6]
    assert all(len({configs[n]["model"]["width"] for n in g}) == 1 for g in groups)
    assert [len(g) for g in ensemble_groups(configs, ("seed", "eval"), cap=2)] == [2, 1] * 4
    # `eval.samples` differs with the seed: without "eval", only the two lrs of one seed
    # and width share a structure.
    groups = ensemble_groups(configs, ("seed", "train.lr"))
    assert [len(g) for g in groups] == [2] * 6
    assert all(len({configs[n]["seed"] for n in g}) == 1 for g in groups)
    assert ensemble_groups(configs, ()) == [[n] for n in configs]


class _Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(4, 4, bias=False)
        self.head = nn.Linear(4, 4, bias=False)
        self.head.weight = self.embed.weight
        self.register_buffer("scale", torch.tensor(2.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x)) * self.scale


def test_members_are_views_of_the_stack_and_keep_tied_weights() -> None:
    members = []
    for seed in range(3):
        torch.manual_seed(seed)
        members.append(_Tied())
    before = [m.embed.weight.detach().clone() for m in members]
    ensemble = Ensemble(members)
    for k, member in enumerate(members):
        assert torch.equal(member.embed.weight, before[k])
        assert member.head.weight is member.embed.weight  # still one parameter
        assert member.embed.weight.data_ptr() == ensemble.params["embed.weight"][k].data_ptr()
    x = torch.randn(3, 5, 4)
    losses = ensemble.losses(lambda model, xs: model(xs).square().mean(), x)
    for k, member in enumerate(members):
        assert losses[k].item() == pytest.approx(member(x[k]).square().mean().item(), rel=1e-6)
    ensemble.backward(losses, [0, 2])
    assert members[1].embed.weight.grad is None  # an inactive member gets no gradient
    reference = _Tied()
    reference.load_state_dict(members[2].state_dict())
    reference(x[2]).square().mean().backward()
    assert torch.allclose(members[2].embed.weight.grad, reference.embed.weight.grad, atol=1e-6)
    with pytest.raises(RunError, match="one architecture"):
        Ensemble([_Tied(), nn.Linear(4, 4)])


CRL = """\
experiment {name} {{ seeds = 2 }}
data maze {{ task = u_maze num_envs = 8 eval_envs = 4 episode_length = 10 }}
model residual_mlp {{ depth = 4 width = 16 }}
objective crl {{}}
train {{ steps = {steps} batch_size = 16 prefill = 10 unroll_length = 5 updates_per_unroll = 2
  eval_every = 10 {train} }}
target cpu {{ ensemble = auto threads = 1 }}
metrics = [success_rate, time_at_goal, critic_loss, categorical_accuracy, actor_loss, alpha]
variant base {{}}
variant other {{ train.lr = 1e-3 objective.logsumexp_penalty = 0.2 data.task = big_maze
  train.steps = {short} }}
"""


def _crl_package(tmp_path: Path, name: str, steps: int, short: int, train: str = "") -> object:
    return _compiled(tmp_path, name, CRL.format(name=name, steps=steps, short=short, train=train))


def test_crl_members_match_their_standalone_runs_over_50_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CRL members (2 seeds x 2 variants that differ in lr, logsumexp penalty, maze and
    steps) against their standalone runs: the same initial networks bit for bit, the same
    environments and batches (the first critic loss agrees to float rounding), per-step
    critic losses within float tolerance, and the same evaluations."""
    train = _crl_package(tmp_path, "crl_eq", steps=50, short=30)
    runs = list(train.RUNS.values())
    built = _record_builds(monkeypatch, train, "Agent")
    ensemble_steps = [_Steps() for _ in runs]
    alone_steps = [_Steps() for _ in runs]
    ensembled = tmp_path / "ensemble"
    train.train_ensemble(runs, [ensembled / r.name for r in runs], ensemble_steps)
    for run, steps in zip(runs, alone_steps, strict=True):
        train.train(run, tmp_path / "alone" / run.name, steps)
    for run, mine, theirs in zip(runs, built[: len(runs)], built[len(runs) :], strict=True):
        assert all(torch.equal(mine[k], theirs[k]) for k in mine), run.name
    for run, mine, theirs in zip(runs, ensemble_steps, alone_steps, strict=True):
        assert len(mine.losses) == len(theirs.losses) == run.train.steps
        assert mine.losses[0] == pytest.approx(theirs.losses[0], rel=1e-6), run.name
        assert mine.losses == pytest.approx(theirs.losses, rel=1e-4, abs=1e-5), run.name
        rows = _rows(ensembled / run.name), _rows(tmp_path / "alone" / run.name)
        assert [r["step"] for r in rows[0]] == [r["step"] for r in rows[1]]
        for key in ("success_rate", "time_at_goal", "categorical_accuracy"):
            assert [r[key] for r in rows[0]] == pytest.approx([r[key] for r in rows[1]], abs=1e-4)
    assert ensemble_steps[0].losses != ensemble_steps[2].losses  # the variant is its own run


def test_an_interrupted_crl_ensemble_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    train = _crl_package(tmp_path, "crl_resumed", steps=30, short=20, train="checkpoint_every = 10")
    _interrupted_and_resumed(train, tmp_path, 14, 10, ("critic_loss", "success_rate", "alpha"))


LM = """\
experiment lm_eq {{ seeds = 2 }}
objective next_token {{}}
data text {{ context = 32 }}
model transformer {{ layers = 2 width = 32 heads = 2 attention {{ gate = elementwise }} }}
train {{ steps = 50 batch_size = 4 eval_every = 10 eval_batches = 2 warmup = 5 }}
target cpu {{ ensemble = auto threads = 1 }}
metrics = [train_loss, val_loss, loss_spikes, gate_score]
variant base {{}}
variant other {{ train.lr = 3e-3 train.steps = 30 train.weight_decay = 0 }}
"""


def test_language_model_members_match_their_standalone_runs_over_50_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """next_token members (2 seeds x 2 variants with their own lr, schedule length and weight
    decay) against their standalone runs: initial weights bit for bit, the same windows,
    per-step losses and every evaluation within float tolerance."""
    train = _compiled(tmp_path, "lm_eq", LM.format())
    runs = list(train.RUNS.values())
    built = _record_builds(monkeypatch, train, "Transformer")
    ensemble_steps = [_Steps() for _ in runs]
    alone_steps = [_Steps() for _ in runs]
    train.train_ensemble(runs, [tmp_path / "ens" / r.name for r in runs], ensemble_steps)
    for run, steps in zip(runs, alone_steps, strict=True):
        train.train(run, tmp_path / "alone" / run.name, steps)
    for run, mine, theirs in zip(runs, built[: len(runs)], built[len(runs) :], strict=True):
        assert all(torch.equal(mine[k], theirs[k]) for k in mine), run.name
    for run, mine, theirs in zip(runs, ensemble_steps, alone_steps, strict=True):
        assert len(mine.losses) == len(theirs.losses) == run.train.steps
        assert mine.losses[0] == pytest.approx(theirs.losses[0], rel=1e-6), run.name
        assert mine.losses == pytest.approx(theirs.losses, rel=1e-4), run.name
        rows = _rows(tmp_path / "ens" / run.name), _rows(tmp_path / "alone" / run.name)
        assert [r["step"] for r in rows[0]] == [r["step"] for r in rows[1]]
        for key in ("val_loss", "gate_score", "lr"):
            assert [r[key] for r in rows[0]] == pytest.approx([r[key] for r in rows[1]], rel=1e-4)


@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 2), st.integers(0, 1)), min_size=1, max_size=30
    ),
    st.one_of(st.none(), st.integers(1, 5)),
)
def test_groups_partition_the_runs_by_structure(
    points: list[tuple[int, int, int]], cap: int | None
) -> None:
    """Every run lands in exactly one group, in order; a group's runs share everything but
    the member fields; no group exceeds the cap; runs that could share a group only split
    where the cap forces it."""
    configs = {
        f"run{i}": {
            "name": f"run{i}",
            "seed": seed,
            "train": {"lr": lr, "steps": 10},
            "model": {"w": w},
        }
        for i, (seed, lr, w) in enumerate(points)
    }
    groups = ensemble_groups(configs, ("seed", "train.lr"), cap=cap)
    flat = [name for group in groups for name in group]
    assert sorted(flat) == sorted(configs)
    for group in groups:
        assert len({configs[n]["model"]["w"] for n in group}) == 1
        assert [flat.index(n) for n in group] == sorted(flat.index(n) for n in group)
        if cap is not None:
            assert len(group) <= cap
    widths = {c["model"]["w"] for c in configs.values()}
    expected = sum(
        -(-sum(1 for c in configs.values() if c["model"]["w"] == w) // (cap or 10**9))
        for w in widths
    )
    assert len(groups) == expected


ROW_KEYS = ("train_loss", "pass_at_1", "reward", "kl", "completion_length", "gate_score")
RLVR = """\
experiment {name} {{ seeds = 2 }}
data arithmetic {{ operands = 2 digits = 1 test_fraction = 0.2 noise = 0.1 }}
model transformer {{ layers = 1 width = 32 heads = 2 attention {{ gate = elementwise }} }}
objective rlvr {{ group_size = 4 }}
train {{
  pretrain {{ steps = {pretrain} batch_size = 16 lr = 1e-2 warmup = 5 eval_every = 10 }}
  rl {{ steps = {rl} prompts = 4 lr = 1e-3 updates = 2 eval_every = 5 }}
  {train}
}}
eval {{ problems = 4 samples = 8 track_samples = 4 }}
target cpu {{ ensemble = auto threads = 1 }}
metrics = [train_loss, pass_at_1, reward, kl, clip_fraction, completion_length, gate_score]
variant base {{}}
variant other {{ train.rl.lr = 3e-3 objective.kl = 0.05 objective.temperature = 0.8 }}
"""


def test_rlvr_members_match_their_standalone_runs_over_both_stages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """rlvr members (2 seeds x 2 variants with their own RL lr, KL coefficient and
    temperature) against their standalone runs over 30 pretraining and 20 GRPO steps:
    initial weights bit for bit, the same demonstrations, problems and rollouts, per-step
    losses, every row and both models' pass@k within float tolerance."""
    text = RLVR.format(name="rlvr_eq", pretrain=30, rl=20, train="")
    train = _compiled(tmp_path, "rlvr_eq", text)
    runs = list(train.RUNS.values())
    built = _record_builds(monkeypatch, train, "Transformer")
    ensemble_steps = [_Steps() for _ in runs]
    train.train_ensemble(runs, [tmp_path / "ens" / r.name for r in runs], ensemble_steps)
    members = built[: len(runs)]  # the trained models, built first; then the frozen bases
    built.clear()
    alone_steps = []
    for run in runs:
        alone_steps.append(_Steps())
        train.train(run, tmp_path / "alone" / run.name, alone_steps[-1])
        members.append(built[0])
        built.clear()
    for run, mine, theirs in zip(runs, members[: len(runs)], members[len(runs) :], strict=True):
        assert all(torch.equal(mine[k], theirs[k]) for k in mine), run.name
    rewarded = 0.0
    for run, mine, theirs in zip(runs, ensemble_steps, alone_steps, strict=True):
        assert len(mine.losses) == len(theirs.losses) == 50
        assert mine.losses[0] == pytest.approx(theirs.losses[0], rel=1e-6), run.name
        assert mine.losses == pytest.approx(theirs.losses, rel=1e-4, abs=1e-6), run.name
        ens, alone = tmp_path / "ens" / run.name, tmp_path / "alone" / run.name
        rows = _rows(ens), _rows(alone)
        assert [r["step"] for r in rows[0]] == [r["step"] for r in rows[1]]
        for mine_row, their_row in zip(*rows, strict=True):
            assert mine_row.keys() == their_row.keys()
            for key in ROW_KEYS:
                if key in mine_row:
                    assert mine_row[key] == pytest.approx(their_row[key], rel=1e-4, abs=1e-6), key
        rewarded += sum(r.get("reward", 0.0) for r in rows[0])
        passk = [json.loads((folder / "passk.json").read_text()) for folder in (ens, alone)]
        assert passk[0]["base"] == passk[1]["base"] and passk[0]["rl"] == passk[1]["rl"]
        assert (ens / "pretrain.pt").is_file()
    assert rewarded > 0  # GRPO had a signal to follow: the stage-2 steps were not all zero
    # The variant trains its own settings: its RL rows are not the base run's.
    assert _rows(tmp_path / "ens" / runs[0].name) != _rows(tmp_path / "ens" / runs[2].name)


def test_an_interrupted_rlvr_ensemble_resumes_in_either_stage(tmp_path: Path) -> None:
    """Interrupted in stage 1 (step 14, checkpoint at 10) and in stage 2 (step 27, checkpoint
    at 25): resumed, every row is the uninterrupted ensemble's."""
    text = RLVR.format(name="rlvr_resumed", pretrain=20, rl=10, train="checkpoint_every = 5")
    train = _compiled(tmp_path, "rlvr_resumed", text)
    _interrupted_and_resumed(train, tmp_path / "one", 13, 10, ("train_loss", "pass_at_1"))
    _interrupted_and_resumed(
        train, tmp_path / "two", 26, 25, ("train_loss", "pass_at_1", "reward", "kl")
    )


def test_a_member_that_cannot_resume_leaves_and_the_others_finish(tmp_path: Path) -> None:
    """After a crash, one member's truncated checkpoint is that member's fault: `--resume`
    trains the others to the end, each to its uninterrupted rows, and names the broken
    one with its reason."""
    train = _package(tmp_path, "faulty", steps=10, evaluations=5, train="checkpoint_every = 4")
    runs = list(train.RUNS.values())
    whole = [tmp_path / "whole" / r.name for r in runs]
    train.train_ensemble(runs, whole)
    cut = [tmp_path / "cut" / r.name for r in runs]
    with pytest.raises(_Interrupt):
        train.train_ensemble(runs, cut, [_StopAfter(6)] + [None] * (len(runs) - 1))
    broken = cut[1] / "checkpoint.pt"
    broken.write_bytes(broken.read_bytes()[:100])
    results = train.train_ensemble(runs, cut, resume=[True] * len(runs))
    assert isinstance(results[1], RunError) and "corrupt or truncated" in str(results[1])
    for k in (0, 2):
        assert _rows(cut[k]) == [
            {**row, "elapsed_s": other["elapsed_s"], "cpu_s": other["cpu_s"]}
            for row, other in zip(_rows(whole[k]), _rows(cut[k]), strict=True)
        ]
        assert _rows(cut[k])[-1]["step"] == 10


def test_expc_run_resumes_the_members_it_can_and_reports_the_one_it_cannot(
    tmp_path: Path,
) -> None:
    spec = tmp_path / "faulty.exp"
    spec.write_text(_diffusion("faulty", steps=6, evaluations=3, train="checkpoint_every = 2"))
    assert _expc_run(tmp_path, spec).returncode == 0
    experiment = tmp_path / "runs" / "faulty"
    names = sorted(p.name for p in experiment.iterdir() if p.is_dir())
    for name in names:  # as a crash before the end leaves them: no summary yet
        (experiment / name / "summary.json").unlink()
    checkpoint = experiment / names[1] / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    result = _expc_run(tmp_path, spec, "--resume")
    output = result.stdout + result.stderr
    assert result.returncode == 1
    assert f"{names[1]}: failed" in output and f"1 of 3 runs failed: {names[1]} (" in output
    assert "corrupt or truncated" in output and "Traceback" not in output
    for name in (names[0], names[2]):
        assert (experiment / name / "summary.json").is_file(), name


def test_a_member_whose_folder_another_run_writes_leaves_and_the_others_train(
    tmp_path: Path,
) -> None:
    from expc.runtime.run_folder import claim

    spec = tmp_path / "held.exp"
    spec.write_text(_diffusion("held", steps=4, evaluations=2))
    held = tmp_path / "runs" / "held" / "seed_1"
    with claim(held):  # this test process is the other writer
        result = _expc_run(tmp_path, spec)
    output = result.stdout + result.stderr
    assert result.returncode == 1 and "Traceback" not in output
    assert "seed_1: failed" in output and "is being written by another expc run" in output
    assert not (held / "metrics.jsonl").exists() and not (held / "job.log").exists()
    for name in ("seed_0", "seed_2"):
        assert _rows(tmp_path / "runs" / "held" / name)[-1]["step"] == 4
