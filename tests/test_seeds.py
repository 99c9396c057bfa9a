"""Seeds as an axis of the language (`experiment { seeds = 3 }`, `--seeds`), and the error
bars every report gives them: means with t intervals, paired differences with verdicts,
curves as a mean with a band."""

from __future__ import annotations

import json
import math
import shutil
import statistics
from pathlib import Path

import pytest
from conftest import MINIMAL, compile_text, error_text, run_cli

from expc.compiler.pipeline import resolve
from expc.compiler.source import SourceFile
from expc.runtime import read_metrics
from expc.runtime.intervals import estimate, paired, t975, verdict
from expc.runtime.report import write_report

SEEDED = MINIMAL.replace("experiment tiny {}", "experiment seeded { seeds = 3 }")


def runs_of(text: str) -> dict[str, int]:
    spec, _ = resolve(SourceFile("seeded.exp", text))
    return {run.name: run.config.experiment.seed for run in spec.runs}


def test_t_quantiles_are_students():
    # Tables of Student's t (two-sided 95%); beyond 30 the approximation is within 1e-3.
    for df, expected in {1: 12.706, 2: 4.303, 4: 2.776, 9: 2.262, 29: 2.045}.items():
        assert t975(df) == expected
    assert abs(t975(40) - 2.021) < 1e-3 and abs(t975(120) - 1.980) < 1e-3
    with pytest.raises(ValueError):
        t975(0)


def test_an_estimate_is_mean_std_and_t_interval():
    found = estimate([1.0, 2.0, 4.0])
    assert found.mean == pytest.approx(7 / 3)
    assert found.std == pytest.approx(statistics.stdev([1.0, 2.0, 4.0]))
    assert found.half_width == pytest.approx(4.303 * found.std / math.sqrt(3))
    single = estimate([5.0])
    assert single.n == 1 and math.isnan(single.half_width) and not single.excludes_zero()
    assert estimate([math.nan, 1.0, 3.0]).n == 2  # non-finite values are not seeds


def test_paired_differences_and_their_verdicts():
    vanilla = {0: 3.50, 1: 3.61, 2: 3.42}
    gated = {0: 3.46, 1: 3.57, 2: 3.39, 7: 1.0}  # seed 7 has no partner: left out
    difference = paired(vanilla, gated)
    assert difference.n == 3
    assert difference.mean == pytest.approx(statistics.fmean([-0.04, -0.04, -0.03]))
    text = verdict("vanilla", "gated", "val_loss", difference)
    assert text.startswith("gated lower than vanilla in val_loss by 0.03667 ± ")
    noisy = paired({0: 1.0, 1: 2.0, 2: 3.0}, {0: 1.5, 1: 1.5, 2: 3.2})
    assert "within noise" in verdict("a", "b", "loss", noisy)
    assert "one common seed" in verdict("a", "b", "loss", paired({0: 1.0}, {0: 2.0, 1: 3.0}))


def test_seeds_multiply_variants_and_sweep_points():
    assert runs_of(SEEDED) == {"seed_0": 0, "seed_1": 1, "seed_2": 2}
    text = SEEDED.replace("seeds = 3", "seed = 10 seeds = 2")
    text += "variant a {}\nvariant b { train.lr = 1e-2 }\nsweep depth { model.layers = [1, 2] }\n"
    assert runs_of(text) == {
        f"{v}-layers_{n}-seed_{s}": s for v in "ab" for n in (1, 2) for s in (10, 11)
    }
    listed = SEEDED.replace("seeds = 3", "seeds = [5, 1]")
    assert runs_of(listed) == {"seed_5": 5, "seed_1": 1}
    # A profile can ask for more seeds (a paper profile), a variant for its own.
    assert len(runs_of(SEEDED + "profile paper { experiment.seeds = 5 }\n")) == 3
    spec, _ = resolve(SourceFile("s.exp", SEEDED + "profile paper { experiment.seeds = 5 }\n"),
                      profile="paper")  # fmt: skip
    assert len(spec.runs) == 5


def test_bad_seeds_are_located_errors():
    twice = error_text(SEEDED.replace("seeds = 3", "seeds = [1, 1]"))
    assert "seeds are listed twice" in twice and "seeded.exp" not in twice
    assert "seeds = [1, 1]" in twice
    assert "a count of seeds is from 1 to 1000, got 0" in error_text(
        SEEDED.replace("seeds = 3", "seeds = 0")
    )


def test_seeds_never_enter_the_generated_config():
    one = compile_text(MINIMAL)
    three = compile_text(SEEDED.replace("experiment seeded", "experiment tiny"))
    for name, text in one.files.items():
        if not name.endswith("config.py"):
            continue
        assert "seeds" not in text and "seeds" not in three.files[name]


def test_a_seeded_run_is_the_standalone_run_with_its_seed(tmp_path: Path):
    out = tmp_path / "runs"
    seeded = tmp_path / "seeded.exp"
    seeded.write_text(SEEDED.replace("steps = 2", "steps = 4"))
    plain = tmp_path / "plain.exp"
    plain.write_text(MINIMAL.replace("steps = 2", "steps = 4").replace("tiny", "seeded") + "")
    assert run_cli("run", seeded, "--out", out).exit_code == 0
    alone = run_cli("run", plain, "--out", tmp_path / "alone")
    assert alone.exit_code == 0, alone.output
    strip = lambda rows: [{k: v for k, v in r.items() if k != "elapsed_s"} for r in rows]  # noqa: E731
    assert strip(read_metrics(out / "seeded" / "seed_0")) == strip(
        read_metrics(tmp_path / "alone" / "seeded" / "main")
    )
    assert strip(read_metrics(out / "seeded" / "seed_1")) != strip(
        read_metrics(out / "seeded" / "seed_0")
    )
    config = json.loads((out / "seeded" / "seed_2" / "config.json").read_text())
    assert config["seed"] == 2 and "seeds" not in json.dumps(config)


def test_more_seeds_on_the_command_line_train_only_the_new_ones(tmp_path: Path):
    spec = tmp_path / "two.exp"
    spec.write_text(
        MINIMAL.replace("experiment tiny {}", "experiment two {}")
        + "variant vanilla {}\nvariant gated { model.attention.gate = elementwise }\n"
    )
    out = tmp_path / "runs"
    first = run_cli("run", spec, "--out", out, "--seeds", "2")
    assert first.exit_code == 0, first.output
    assert sorted(p.name for p in (out / "two").glob("*-seed_*")) == [
        "gated-seed_0", "gated-seed_1", "vanilla-seed_0", "vanilla-seed_1"
    ]  # fmt: skip
    more = run_cli("run", spec, "--out", out, "--seeds", "3")
    assert more.exit_code == 0, more.output
    assert more.output.count("finished earlier") == 4
    assert (out / "two" / "gated-seed_2" / "summary.json").exists()
    listed = run_cli("run", spec, "--out", out, "--seeds", "0,2", "--variant", "gated")
    assert listed.exit_code == 0 and listed.output.count("finished earlier") == 2
    report = (out / "two" / "report.md").read_text()
    assert "| gated | 3 |" in report and "| vanilla | 3 |" in report
    assert "Paired differences over the seeds both runs have" in report
    bad = run_cli("run", spec, "--out", out, "--seeds", "1,1")
    assert bad.exit_code == 1 and "seeds are listed twice" in bad.output
    assert "--> --seeds:1:" in bad.output


def test_the_report_gives_intervals_and_verdicts(tmp_path: Path):
    experiment = tmp_path / "exp"
    losses = {"vanilla": [3.50, 3.61, 3.42], "gated": [3.46, 3.57, 3.39]}
    for variant, values in losses.items():
        for seed, loss in enumerate(values):
            run = experiment / f"{variant}-seed_{seed}"
            run.mkdir(parents=True)
            (run / "config.json").write_text(
                json.dumps({"name": run.name, "seed": seed, "model": {"gate": variant}})
            )
            rows = [{"step": 1, "val_loss": loss + 1}, {"step": 2, "val_loss": loss}]
            (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = write_report(experiment).read_text()
    found = estimate(losses["vanilla"])
    assert f"| vanilla | 3 | {found.mean:.4f} ± {found.std:.4f} [{found.low:.4f}, " in text
    assert "- vanilla higher than gated in val_loss by 0.03667 ± 0.014 (3 seeds)" in text
    assert (experiment / "val_loss.png").exists()


def test_two_seeds_get_an_interval_but_no_verdict():
    agreeing = paired({0: 0.0, 1: 0.0}, {0: 0.25, 1: 0.25})
    text = verdict("depth 4", "depth 64", "success", agreeing)
    assert text == "depth 64 vs depth 4: success +0.25 ± 0 (2 seeds: too few for a verdict)"


def test_the_crl_depth_table_gives_each_depth_over_seeds(tmp_path: Path):
    from expc.runtime.crl.report import analyse

    experiment = tmp_path / "crl"
    success = {4: [0.1, 0.2, 0.15], 16: [0.4, 0.5, 0.45]}
    for depth, values in success.items():
        for seed, value in enumerate(values):
            run = experiment / f"maze-depth_{depth}-seed_{seed}"
            run.mkdir(parents=True)
            (run / "config.json").write_text(json.dumps({"seed": seed, "model": {"depth": depth}}))
            rows = [{"step": s, "success_rate": value, "time_at_goal": 1.0} for s in (1, 2)]
            (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    lines = analyse(experiment)
    found = estimate(success[16])
    assert f"| 16 | 3 | {found.mean:.3f} ± {found.half_width:.3f} | 1.000 ± 0.000 |" in lines
    assert any(line.startswith("- depth 16 higher than depth 4 in success by 0.3 ± ")
               for line in lines)  # fmt: skip


def test_bootstrap_over_seeds_is_seeded_and_needs_two_seeds():
    from expc.runtime.intervals import bootstrap_over_seeds

    values = {0: 1.0, 1: 2.0, 2: 3.0}
    mean = lambda seeds: statistics.fmean(values[s] for s in seeds)  # noqa: E731
    low, high, used = bootstrap_over_seeds([0, 1, 2], mean)
    assert 1.0 <= low < 2.0 < high <= 3.0 and used == 1000
    assert bootstrap_over_seeds([0, 1, 2], mean) == (low, high, used)  # the same each time
    assert bootstrap_over_seeds([0], mean) is None
    assert bootstrap_over_seeds([0, 1], lambda seeds: None) is None


def test_the_tau_mem_slope_gets_a_bootstrap_interval_over_seeds(tmp_path: Path):
    from expc.runtime.diffusion.report import analyse

    experiment = tmp_path / "diffusion"
    steps = list(range(5, 1000, 5))
    wobble = {(0, 16): 1.3, (0, 32): 0.8, (0, 64): 1.1, (1, 16): 0.9, (1, 32): 1.2,
              (1, 64): 1.0, (2, 16): 1.0, (2, 32): 1.1, (2, 64): 0.85}  # fmt: skip
    for seed in range(3):
        for n in (16, 32, 64):
            run = experiment / f"n_{n}-seed_{seed}"
            run.mkdir(parents=True)
            config = {"seed": seed, "data": {"n": n}, "train": {"steps": steps[-1]}, "eval": {}}
            (run / "config.json").write_text(json.dumps(config))
            crossing = 4 * n * wobble[seed, n]  # tau_mem proportional to n, and noise
            rows = [
                {"step": s, "memorization": 1.0 if s >= crossing else 0.0, "quality": 1.0 / s}
                for s in steps
            ]
            (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    lines = analyse(experiment)
    interval = [line for line in lines if line.startswith("- tau_mem slope over 3 seeds")]
    assert len(interval) == 1, lines
    low, high = (float(x) for x in interval[0].split("[")[1].split("]")[0].split(", "))
    assert low < 1.0 < high and high - low > 0.05 and "it includes 1" in interval[0]


def test_rlvr_claims_get_intervals_over_seeds(tmp_path: Path):
    from expc.runtime.rlvr.report import analyse, passk_summary, write_passk

    experiment = tmp_path / "rlvr"
    # Per seed: the base model solves some problems rarely, RL solves fewer but more often.
    for seed, extra in enumerate((0, 1, 2)):
        base = [2 + extra, 1, 1, 0, 3, 1, 0, 2]
        rl = [12 + extra, 0, 0, 0, 14, 0, 0, 9]
        run = experiment / f"gated-seed_{seed}"
        run.mkdir(parents=True)
        (run / "config.json").write_text(json.dumps({"seed": seed}))
        (run / "metrics.jsonl").write_text(json.dumps({"step": 1, "pass_at_1": 0.1}) + "\n")
        write_passk(run, passk_summary(base, rl, samples=16))
    lines = analyse(experiment)
    gain = [line for line in lines if line.startswith("- pass@1, RL - base:")]
    lead = [line for line in lines if line.startswith("- pass@16, base - RL:")]
    assert len(gain) == len(lead) == 1, lines
    assert gain[0].endswith("(3 seeds), above 0")
    assert lead[0].endswith("(3 seeds), above 0")
    assert any(line.startswith("- crossover k: in 3 of 3 seeds, ") for line in lines)


def _similarities(seed: int, vanilla: float, gated: float, inter: float):
    from expc.runtime.hivemind.analysis import Analysis

    models = [f"lm/vanilla-seed_{seed}", f"lm/gated-seed_{seed}"]
    return Analysis(
        models=models,
        thresholds=[0.8],
        scores=[],
        intra_mean={models[0]: vanilla, models[1]: gated},
        histogram={},
        histogram_edges=[],
        share_above={m: {"0.8": 0.0} for m in models},
        inter=[[1.0, inter], [inter, 1.0]],
        inter_without_self=[[vanilla, inter], [inter, gated]],
        top_n_sources={},
        by_category={},
    )


def test_hivemind_similarities_get_intervals_over_seeds():
    from expc.runtime.hivemind.report import over_seeds

    values = {0: (0.25, 0.20, 0.30), 1: (0.27, 0.21, 0.33), 2: (0.26, 0.23, 0.31)}
    analyses = {f"top_p-seed_{s}": _similarities(s, *v) for s, v in values.items()}
    text = "\n".join(over_seeds(analyses))
    assert "## Run `top_p` over 3 seeds" in text
    vanilla = estimate([v[0] for v in values.values()])
    row = f"| lm/vanilla | 3 | {vanilla.mean:.3f} ± {vanilla.std:.3f} [{vanilla.low:.3f}, "
    assert row in text
    assert "| lm/vanilla × lm/gated | 3 | 0.313 ± 0.015 " in text
    gap = paired({s: v[0] for s, v in values.items()}, {s: v[1] for s, v in values.items()})
    assert f"lm/gated lower than lm/vanilla in intra by {abs(gap.mean):.4g}" in text
    # Inter minus each seed's mean intra: (0.075, 0.09, 0.065).
    claim = verdict(
        "mean intra", "lm/vanilla × lm/gated inter", "similarity", estimate([0.075, 0.09, 0.065])
    )
    assert claim in text
    assert over_seeds({"top_p": analyses["top_p-seed_0"]}) == []  # one run: nothing over seeds


def test_runs_reading_their_own_seeds_upstream_runs_group_by_seed(tmp_path: Path):
    experiment = tmp_path / "hm"
    for seed, intra in enumerate([0.25, 0.27, 0.26]):
        run = experiment / f"top_p-seed_{seed}"
        run.mkdir(parents=True)
        folder = f"/runs/lm/vanilla-seed_{seed}"
        config = {
            "name": run.name,
            "seed": seed,
            "model": {"checkpoints": [folder]},
            "upstream": [
                {"run": f"vanilla-seed_{seed}", "folder": folder, "checkpoint_sha256": str(seed)}
            ],
        }
        (run / "config.json").write_text(json.dumps(config))
        (run / "metrics.jsonl").write_text(json.dumps({"step": 1, "intra": intra}) + "\n")
    # Seed 1's run reading seed 10's upstream run is another run, not another seed.
    odd = json.loads((experiment / "top_p-seed_1/config.json").read_text())
    text = write_report(experiment).read_text()
    assert "| top_p | 3 | 0.2600 ± 0.0100 " in text
    odd["model"]["checkpoints"] = ["/runs/lm/vanilla-seed_10"]
    (experiment / "top_p-seed_1/config.json").write_text(json.dumps(odd))
    assert "| top_p | 3 |" not in write_report(experiment).read_text()


def test_the_learning_rate_stability_table_finds_each_series_largest_stable_lr(tmp_path: Path):
    experiment = tmp_path / "lrs"
    # (variant, lr) -> per seed: (final loss_spikes, diverged, final val_loss)
    outcomes = {
        ("vanilla", 0.01): [(0, 0, 2.0), (0, 0, 2.1)],
        ("vanilla", 0.1): [(0, 0, 2.5), (3, 0, 2.9)],  # one seed spiked: unstable
        ("vanilla", 0.3): [(0, 1, None), (0, 1, None)],
        ("gated", 0.01): [(0, 0, 1.9), (0, 0, 2.0)],
        ("gated", 0.1): [(0, 0, 2.2), (0, 0, 2.3)],
        ("gated", 0.3): [(0, 0, 6.0), (0, 0, 2.4)],  # worse than uniform, no spike seen
    }
    for (variant, lr), seeds in outcomes.items():
        for seed, (spikes, diverged, loss) in enumerate(seeds):
            run = experiment / f"{variant}-lr_{lr}-seed_{seed}"
            run.mkdir(parents=True)
            config = {
                "name": run.name,
                "seed": seed,
                "model": {"gate": variant},
                "train": {"lr": lr},
            }
            (run / "config.json").write_text(json.dumps(config))
            last = {"step": 2, "train_loss": 1.0, "loss_spikes": spikes}
            if diverged:
                last = {"step": 2, "train_loss": float("nan"), "diverged": 1}
            else:
                last["val_loss"] = loss
            rows = [{"step": 1, "train_loss": 3.0, "val_loss": 3.0, "loss_spikes": 0}, last]
            (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (experiment / "spec.json").write_text(
        json.dumps({"report": "expc.runtime.lr_stability:analyse"})
    )
    with pytest.warns(UserWarning, match="not finite"):  # the diverged rows' NaN losses
        text = write_report(experiment).read_text()
    assert "| vanilla | 0.1 | 2 | 0, 3 | 1/2 | 2.7000 ± 2.5412 |" in text
    assert "| vanilla | 0.3 | 2 | div, div | 0/2 | - |" in text
    assert "| gated | 0.3 | 2 | 0 (up), 0 | 1/2 |" in text
    assert "- vanilla: largest stable lr **0.01**" in text
    assert "- gated: largest stable lr **0.1**" in text
    assert "![final validation loss against the learning rate](lr_stability.png)" in text
    assert (experiment / "lr_stability.png").stat().st_size > 0
    # No learning-rate sweep, no table.
    from expc.runtime.lr_stability import analyse

    for run in experiment.glob("*-lr_0.3-*"):
        shutil.rmtree(run)
    assert "- gated: stable at every lr swept, up to 0.1" in "\n".join(analyse(experiment))
    for run in experiment.glob("*-lr_0.1-*"):
        shutil.rmtree(run)
    assert analyse(experiment) == []


def test_the_longer_context_table_pairs_each_extension_with_plain_extrapolation(tmp_path: Path):
    from expc.runtime.context_extension import analyse

    experiment = tmp_path / "long"
    # (series, seed) -> val_loss, then (plain, yarn, pi) at 2x and at 4x
    finals = {
        ("vanilla", 1): (1.25, (1.40, 1.30, 2.4), (1.70, 1.50, 3.1)),
        ("vanilla", 2): (1.27, (1.42, 1.34, 2.5), (1.66, 1.48, 3.3)),
        ("vanilla", 3): (1.26, (1.38, 1.32, 2.3), (1.68, 1.46, 3.2)),
        ("gated", 1): (1.24, (1.36, 1.30, 2.4), (1.60, 1.45, 3.0)),
        ("gated", 2): (1.25, (1.40, 1.33, 2.5), (1.64, 1.49, 3.2)),
        ("gated", 3): (1.23, (1.35, 1.31, 2.6), (1.62, 1.47, 3.1)),
    }
    for (series, seed), (loss, *longer) in finals.items():
        run = experiment / f"{series}-seed_{seed}"
        run.mkdir(parents=True)
        (run / "config.json").write_text(json.dumps({"name": run.name, "seed": seed}))
        last = {"step": 20, "val_loss": loss}
        for multiple, (plain, yarn, pi) in zip((2, 4), longer, strict=True):
            last |= {f"val_loss_x{multiple}": plain, f"val_loss_x{multiple}_yarn": yarn}
            last[f"val_loss_x{multiple}_pi"] = pi
        rows = [{"step": 10, "val_loss": 2.0, "val_loss_x2": 2.5}, last]
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = "\n".join(analyse(experiment))
    assert (
        "| series | context | plain | pi | yarn | pi − plain (paired) | yarn − plain (paired) |"
        in text
    )
    # vanilla at 4x: plain 1.68 ± t(2)·0.02/√3, yarn − plain = -0.20, -0.18, -0.22
    assert "| vanilla | 4× | 1.6800 ± 0.0497 | 3.2000 ± 0.2484 | 1.4800 ± 0.0497 |" in text
    assert "| -0.2000 ± 0.0497 |" in text
    assert "| gated | 1× | 1.2400 ± 0.0248 | - | - | - | - |" in text
    # gated - vanilla, seed by seed at 4x with YaRN: -0.05, +0.01, +0.01
    assert "- gated − vanilla, 4×, yarn: -0.0100 ± 0.0861 (3 seeds)" in text
    assert "![longer contexts](context_extension.png)" in text
    assert (experiment / "context_extension.png").stat().st_size > 0
    # Runs with no longer context give no section (the spec measured none).
    for run in experiment.glob("*-seed_*"):
        (run / "metrics.jsonl").write_text(json.dumps({"step": 20, "val_loss": 1.2}) + "\n")
    assert analyse(experiment) == []
