"""Specs build on specs (`extends`, `remove`), experiments on experiments (`run(...)`
references, built first by `expc run`), and no run overwrites another's folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from expc.compiler import CompileError, resolve
from expc.compiler.diagnostics import render_all
from expc.compiler.source import SourceFile
from tests.conftest import MINIMAL, ROOT, run_cli

BASE = """\
experiment base_exp {
  description = "the base"
  seed = 7
}
data text { context = 16 }
model transformer {
  layers = 1
  width = 16
  heads = 2
  attention { gate = elementwise }
}
objective next_token {}
train {
  steps = 4
  batch_size = 2
  eval_every = 2
  eval_batches = 1
  warmup = 3
}
eval { context_multiples = [1, 2] }
target cpu {}
metrics = [train_loss, val_loss, gate_score]
variant vanilla { model.attention.gate = none }
variant gated { model.attention.gate = elementwise }
sweep depth { model.layers = [1, 2] }
profile fast { train.steps = 2 }
"""


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _resolve(path: Path, profile: str | None = None):
    spec, _ = resolve(SourceFile.read(path), profile=profile)
    return spec


def _errors(path: Path) -> str:
    source = SourceFile.read(path)
    with pytest.raises(CompileError) as caught:
        resolve(source)
    sources = {**getattr(caught.value, "sources", {}), source.name: source}
    return str(render_all(caught.value.diagnostics, sources))


def _values(spec) -> dict:  # noqa: ANN001
    def strip(value):  # noqa: ANN001, ANN202
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("span", "field_spans")}
        return value

    return {run.name: strip(run.config.model_dump()) for run in spec.runs}


# --- extends --------------------------------------------------------------------------------


def test_a_spec_extends_another_with_every_kind_of_override(tmp_path: Path) -> None:
    _write(tmp_path, "pyproject.toml", "")  # the project root: sub/ may extend ../base.exp
    _write(tmp_path, "base.exp", BASE)
    child = _write(
        tmp_path,
        "sub/child.exp",
        """\
extends "../base.exp"

experiment child_exp {}          # renamed; description and seed are inherited
model.width = 32                 # a field, by dotted path
train {
  lr = 1e-3                      # a field added to an inherited block
  remove warmup                  # back to the default
}
remove eval                      # a whole block back to its defaults
metrics = [train_loss, val_loss] # a value replaced
remove variant.gated             # a variant dropped
variant vanilla { model.attention.gate = none  model.heads = 4 }  # replaced
variant headwise { model.attention.gate = headwise }              # added
remove sweep.depth
sweep lr { train.lr = [1e-3, 2e-3] }
profile fast { train.steps = 3 }  # replaced
""",
    )
    spec = _resolve(child)
    base = _resolve(tmp_path / "base.exp")
    assert spec.config.experiment.name == "child_exp"
    assert spec.config.experiment.description == "the base"
    assert spec.config.experiment.seed == 7
    assert spec.config.model.width == 32 and spec.config.model.layers == 1
    assert spec.config.train.lr == 1e-3
    assert spec.config.train.warmup == type(base.config.train)().warmup != 3
    assert spec.config.eval.context_multiples == type(base.config.eval)().context_multiples
    assert spec.config.metrics == ("train_loss", "val_loss")
    names = [run.name for run in spec.runs]
    assert names == [
        "vanilla-lr_0.001",
        "vanilla-lr_0.002",
        "headwise-lr_0.001",
        "headwise-lr_0.002",
    ]
    assert spec.runs[0].config.model.heads == 4
    assert spec.runs[2].config.model.attention.gate == "headwise"
    assert spec.extends == ("base.exp",) or spec.extends[0].endswith("base.exp")
    fast = _resolve(child, profile="fast")
    assert {run.config.train.steps for run in fast.runs} == {3}
    # The base spec itself is unchanged by what extends it.
    assert [run.name for run in base.runs][:2] == ["vanilla-layers_1", "vanilla-layers_2"]


def test_extending_with_no_changes_gives_the_same_runs(tmp_path: Path) -> None:
    _write(tmp_path, "base.exp", BASE)
    child = _write(tmp_path, "child.exp", 'extends "base.exp"\n')
    assert _values(_resolve(child)) == _values(_resolve(tmp_path / "base.exp"))


def test_a_block_of_another_kind_replaces_the_inherited_one(tmp_path: Path) -> None:
    base = (ROOT / "specs" / "diffusion_memorization.exp").read_text()
    _write(tmp_path, "unet.exp", base)
    child = _write(
        tmp_path,
        "dit.exp",
        'extends "unet.exp"\nexperiment dit_child {}\n'
        "model transformer { layers = 2 width = 32 heads = 2 patch = 4 }\n",
    )
    spec = _resolve(child)
    assert spec.config.model.family == "transformer"
    assert spec.config.model.patch == 4
    assert spec.config.data == _resolve(tmp_path / "unet.exp").config.data


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    width=st.sampled_from([16, 32, 64]),
    steps=st.integers(1, 50),
    lr=st.sampled_from(["1e-3", "3e-3", "0.01"]),
    layers=st.integers(1, 3),
)
def test_overriding_in_a_child_equals_writing_the_value_in_the_base(
    tmp_path: Path, width: int, steps: int, lr: str, layers: int
) -> None:
    _write(tmp_path, "base.exp", BASE)
    child = _write(
        tmp_path,
        "child.exp",
        f'extends "base.exp"\nmodel.width = {width}\ntrain {{ steps = {steps} lr = {lr} }}\n'
        f"sweep depth {{ model.layers = [{layers}] }}\n",
    )
    edited = (
        BASE.replace("width = 16", f"width = {width}")
        .replace("steps = 4", f"steps = {steps}\n  lr = {lr}")
        .replace("model.layers = [1, 2]", f"model.layers = [{layers}]")
    )
    flat = _write(tmp_path, "flat.exp", edited)
    assert _values(_resolve(child)) == _values(_resolve(flat))


def test_an_error_in_an_extended_spec_is_located_there_with_an_included_from_note(
    tmp_path: Path,
) -> None:
    _write(tmp_path, "base.exp", BASE.replace("heads = 2", "heads = 3"))
    child = _write(tmp_path, "child.exp", '# a comment\nextends "base.exp"\n')
    text = _errors(child)
    assert "`model.width` (16) must be divisible by `model.heads` (3)" in text or "heads" in text
    assert "base.exp:9:" in text  # the heads line of the base spec
    assert "included from" in text and "child.exp:2" in text
    assert "heads = 3" in text  # the code frame of the included file


def test_a_syntax_error_in_an_extended_spec_is_located_there(tmp_path: Path) -> None:
    _write(tmp_path, "base.exp", "experiment x {\n  seed = = 1\n}\n")
    child = _write(tmp_path, "child.exp", 'extends "base.exp"\n')
    text = _errors(child)
    assert "base.exp:2:" in text and "included from" in text


def test_an_extends_cycle_is_a_located_error(tmp_path: Path) -> None:
    _write(tmp_path, "a.exp", 'extends "b.exp"\n' + MINIMAL)
    _write(tmp_path, "b.exp", 'extends "a.exp"\n')
    text = _errors(tmp_path / "a.exp")
    assert "`extends` cycle: " in text and "a.exp -> " in text
    assert "b.exp:1:9" in text


def test_a_missing_extended_spec_is_a_located_error(tmp_path: Path) -> None:
    child = _write(tmp_path, "child.exp", MINIMAL + 'extends "nope.exp"\n')
    text = _errors(child)
    assert "no spec file at" in text and "nope.exp" in text
    assert "child.exp:10:9" in text


def test_remove_errors_are_located(tmp_path: Path) -> None:
    _write(tmp_path, "base.exp", BASE)
    alone = _write(tmp_path, "alone.exp", MINIMAL + "remove train.lr\n")
    assert "nothing to remove: `train.lr` is not inherited" in _errors(alone)
    child = _write(
        tmp_path,
        "child.exp",
        'extends "base.exp"\nremove train.beta1\nremove variant.gatd\n'
        "variant x { remove train.lr }\n",
    )
    text = _errors(child)
    assert "nothing to remove: no extended spec sets `train.beta1`" in text
    assert "no extended spec declares variant `gatd`" in text and "did you mean `gated`" in text
    assert "`remove` cannot be used inside a variant" in text


def test_fmt_keeps_extends_remove_and_references(tmp_path: Path) -> None:
    text = (
        'extends   "base.exp"  # the base\nremove  variant.gated\n'
        'model generators { checkpoints = [ run( "a" ,"b" ) ] }\n'
    )
    path = _write(tmp_path, "f.exp", text)
    result = run_cli("fmt", path, "--stdout")
    assert result.exit_code == 0, result.output
    assert result.output == (
        'extends "base.exp" # the base\nremove variant.gated\n'
        'model generators {\n  checkpoints = [run("a", "b")]\n}\n'
    )


def test_explain_shows_which_file_and_line_each_value_came_from(tmp_path: Path) -> None:
    _write(tmp_path, "base.exp", BASE)
    child = _write(tmp_path, "child.exp", 'extends "base.exp"\nmodel.width = 32\n')
    result = run_cli("explain", child)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    width = next(line for line in lines if line.strip().startswith("width ="))
    heads = next(line for line in lines if line.strip().startswith("heads ="))
    assert width.rstrip().endswith("child.exp:2") and heads.rstrip().endswith("base.exp:9")
    assert any("model.attention.gate = none" in line and "base.exp:23" in line for line in lines)


def test_check_reports_a_spec_stale_when_a_file_it_extends_changes(tmp_path: Path) -> None:
    _write(tmp_path, "specs/base.exp", BASE)
    _write(tmp_path, "specs/child.exp", 'extends "base.exp"\nexperiment child_exp {}\n')
    env = {"PATH": "/usr/bin:/bin", "XDG_CACHE_HOME": str(tmp_path / "cache")}

    def expc(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "expc", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env=env,
        )

    assert expc("compile").returncode == 0
    assert expc("check").returncode == 0
    header = (tmp_path / "generated/child_exp/train.py").read_text().splitlines()[1]
    # Only the comment changes: the generated code is the same, the header's hash is not.
    _write(tmp_path, "specs/base.exp", BASE.replace('"the base"', '"the base, edited"'))
    stale = expc("check")
    assert stale.returncode == 2, stale.stdout + stale.stderr
    assert "generated/child_exp/" in stale.stdout + stale.stderr
    assert expc("compile").returncode == 0
    assert (tmp_path / "generated/child_exp/train.py").read_text().splitlines()[1] != header
    assert expc("check").returncode == 0


def test_the_compile_cache_never_mixes_up_two_folders_with_the_same_child(tmp_path: Path) -> None:
    """The same child text in two folders extends two different base files."""
    env = {"PATH": "/usr/bin:/bin", "XDG_CACHE_HOME": str(tmp_path / "cache")}
    outputs = []
    for folder, width in (("one", 16), ("two", 32)):
        _write(tmp_path, f"{folder}/specs/base.exp", BASE.replace("width = 16", f"width = {width}"))
        _write(
            tmp_path, f"{folder}/specs/child.exp", 'extends "base.exp"\nexperiment child_exp {}\n'
        )
        result = subprocess.run(
            [sys.executable, "-m", "expc", "compile"],
            cwd=tmp_path / folder,
            capture_output=True,
            text=True,
            env=env,
        )
        assert result.returncode == 0, result.stderr
        outputs.append((tmp_path / folder / "generated/child_exp/model.py").read_text())
    assert outputs[0] != outputs[1]


# --- references -----------------------------------------------------------------------------

HIVEMIND = """\
experiment hm {}
data prompts { per_category = 1 }
model generators { checkpoints = [CHECKPOINTS] }
objective hivemind { n = 2 max_tokens = 4 }
eval { top_n = 2 }
target cpu {}
"""


def _hivemind(folder: Path, name: str, checkpoints: str) -> Path:
    return _write(folder, name, HIVEMIND.replace("CHECKPOINTS", checkpoints))


def test_a_reference_resolves_to_the_runs_default_folder(tmp_path: Path) -> None:
    _write(tmp_path, "lm.exp", BASE)
    spec = _resolve(_hivemind(tmp_path, "hm.exp", 'run("lm", "gated-layers_2")'))
    (run,) = spec.runs
    assert run.config.model.checkpoints == ("runs/base_exp/gated-layers_2",)
    (reference,) = run.upstream
    assert (reference.experiment, reference.run) == ("base_exp", "gated-layers_2")
    assert reference.field == ("model", "checkpoints", 0)


def test_each_seed_of_a_seeded_spec_reads_the_upstream_run_of_its_seed(tmp_path: Path) -> None:
    _write(tmp_path, "lm.exp", BASE)
    hm = _hivemind(tmp_path, "hm.exp", 'run("lm", "gated-layers_2"), run("lm", "vanilla-layers_1")')
    hm.write_text(hm.read_text().replace("experiment hm {}", "experiment hm { seeds = [3, 5] }"))
    spec = _resolve(hm)
    assert [run.name for run in spec.runs] == ["seed_3", "seed_5"]
    for run, seed in zip(spec.runs, (3, 5), strict=True):
        assert run.config.model.checkpoints == (
            f"runs/base_exp/gated-layers_2-seed_{seed}",
            f"runs/base_exp/vanilla-layers_1-seed_{seed}",
        )
        assert [(r.run, r.seed, r.run_name) for r in run.upstream] == [
            ("gated-layers_2", seed, f"gated-layers_2-seed_{seed}"),
            ("vanilla-layers_1", seed, f"vanilla-layers_1-seed_{seed}"),
        ]
        assert [r.field for r in run.upstream] == [
            ("model", "checkpoints", 0),
            ("model", "checkpoints", 1),
        ]
    # A reference that names one seed of a seeded upstream is read as written, by every seed.
    _write(tmp_path, "lm2.exp", BASE.replace("seed = 7", "seeds = 2"))
    named = _hivemind(tmp_path, "named.exp", 'run("lm2", "gated-layers_1-seed_1")')
    named.write_text(named.read_text().replace("experiment hm {}", "experiment hm { seeds = 2 }"))
    for run in _resolve(named).runs:
        assert run.config.model.checkpoints == ("runs/base_exp/gated-layers_1-seed_1",)
        assert [r.seed for r in run.upstream] == [None]


@pytest.mark.parametrize(
    ("checkpoints", "message"),
    [
        ('run("nope", "x")', 'no spec "nope" (looked for'),
        ('run("lm", "gatd-layers_1")', "has no run `gatd-layers_1`"),
        ('run("lm")', "`run(...)` takes two strings"),
        ('runs("lm", "vanilla-layers_1")', "unknown function `runs`"),
        ('run("crl", "u_maze-depth_4")', "this field needs a sequence model over tokens"),
        ('run("broken", "x")', "broken does not compile (1 error)"),
    ],
)
def test_bad_references_are_located_errors(tmp_path: Path, checkpoints: str, message: str) -> None:
    _write(tmp_path, "lm.exp", BASE)
    _write(tmp_path, "crl.exp", (ROOT / "specs/crl_depth.exp").read_text())
    _write(tmp_path, "broken.exp", MINIMAL.replace("width = 16", "width = 0"))
    path = _hivemind(tmp_path, "hm.exp", checkpoints)
    text = _errors(path)
    assert message in text
    assert "hm.exp:3:" in text


def test_a_reference_where_no_run_folder_is_taken_is_an_error(tmp_path: Path) -> None:
    _write(tmp_path, "lm.exp", BASE)
    path = _write(
        tmp_path,
        "x.exp",
        MINIMAL.replace(
            "data text { context = 16 }", 'data text { corpus = run("lm", "gated-layers_1") }'
        ),
    )
    assert "`data.corpus` does not take a run folder" in _errors(path)


def test_a_reference_cycle_is_a_located_error(tmp_path: Path) -> None:
    _hivemind(tmp_path, "a.exp", 'run("b", "main")').write_text(
        HIVEMIND.replace("CHECKPOINTS", 'run("b", "main")').replace("hm", "a_exp")
    )
    _hivemind(tmp_path, "b.exp", 'run("a", "main")').write_text(
        HIVEMIND.replace("CHECKPOINTS", 'run("a", "main")').replace("hm", "b_exp")
    )
    text = _errors(tmp_path / "a.exp")
    assert "reference cycle" in text and "a.exp -> b.exp -> a.exp" in text


def test_graph_prints_references_and_extends() -> None:
    result = run_cli("graph", "specs/hivemind.exp", "specs/gated_attention_cuda.exp")
    assert result.exit_code == 0, result.output
    assert "top_p <- gated_attention/vanilla, gated_attention/gated" in result.output
    assert "extends specs/gated_attention.exp" in result.output
    dot = run_cli("graph", "specs/hivemind.exp", "--dot")
    assert '"gated_attention/gated" -> "hivemind/min_p";' in dot.output
    assert dot.output.startswith("digraph")


def _expc(*args: object, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "expc", *map(str, args)], cwd=cwd, capture_output=True, text=True
    )


def test_hivemind_smoke_in_an_empty_folder_trains_its_upstream_runs_first(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    first = _expc(
        "run", "specs/hivemind.exp", "--smoke", "--out", out, "--generated", tmp_path / "gen"
    )
    assert first.returncode == 0, first.stdout + first.stderr
    assert "hivemind reads gated_attention/vanilla, gated_attention/gated" in first.stdout
    for name in ("vanilla", "gated"):
        assert (out / "gated_attention@smoke" / name / "summary.json").exists()
    config = json.loads((out / "hivemind@smoke/top_p/config.json").read_text())
    assert config["model"]["checkpoints"] == [
        str(out / "gated_attention@smoke/vanilla"),
        str(out / "gated_attention@smoke/gated"),
    ]
    import hashlib

    for record in config["upstream"]:
        checkpoint = Path(record["folder"]) / "checkpoint.pt"
        assert record["checkpoint_sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
        assert record["spec"] == "specs/gated_attention.exp" and len(record["spec_sha256"]) == 64
    # Up to date: nothing trains again.
    again = _expc(
        "run", "specs/hivemind.exp", "--smoke", "--out", out, "--generated", tmp_path / "gen"
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("finished earlier with this config, skipped") == 4


def test_a_failing_upstream_run_is_reported_by_name(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "lm.exp",
        BASE.replace(
            "data text { context = 16 }", 'data text { corpus = "gone.txt" context = 16 }'
        ),
    )
    path = _hivemind(tmp_path, "hm.exp", 'run("lm", "gated-layers_1")')
    result = _expc("run", path, "--out", tmp_path / "runs", cwd=tmp_path)
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert "no such file: gone.txt (data.corpus)" in output
    assert "upstream run base_exp/gated-layers_1 did not finish" in output
    assert "Traceback" not in output


def test_a_stale_upstream_run_is_never_read_and_force_retrains_only_it(tmp_path: Path) -> None:
    lm = _write(tmp_path, "lm.exp", BASE)
    path = _hivemind(tmp_path, "hm.exp", 'run("lm", "gated-layers_1")')
    out = tmp_path / "runs"
    assert _expc("run", path, "--out", out, cwd=tmp_path).returncode == 0
    lm.write_text(BASE.replace("steps = 4", "steps = 6"))
    stale = _expc("run", path, "--out", out, cwd=tmp_path)
    output = stale.stdout + stale.stderr
    assert stale.returncode == 1
    assert "finished earlier with another config (train.steps 4 -> 6)" in output
    assert "upstream run base_exp/gated-layers_1 did not finish" in output
    forced = _expc("run", path, "--out", out, "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert "replacing the finished run (--force): train.steps 4 -> 6" in forced.stdout
    config = json.loads((out / "hm/main/config.json").read_text())
    summary = json.loads((out / "base_exp/gated-layers_1/summary.json").read_text())
    assert summary["step"] == 6 and config["upstream"][0]["run"] == "gated-layers_1"
    # The upstream run that was up to date is not touched by --force.
    again = _expc("run", path, "--out", out, "--force", cwd=tmp_path)
    assert "gated-layers_1: finished earlier with this config, skipped" in again.stdout


# --- run folders: profiles, --set, --force, a clean repository --------------------------------


def test_a_smoke_run_after_a_default_run_leaves_its_files_byte_identical(tmp_path: Path) -> None:
    spec = _write(tmp_path, "s.exp", MINIMAL)
    out = tmp_path / "runs"
    assert _expc("run", spec, "--out", out, cwd=tmp_path).returncode == 0
    before = {p: p.read_bytes() for p in (out / "tiny").rglob("*") if p.is_file()}
    smoke = _expc("run", spec, "--smoke", "--out", out, cwd=tmp_path)
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr
    assert {p: p.read_bytes() for p in (out / "tiny").rglob("*") if p.is_file()} == before
    assert (out / "tiny@smoke/main/summary.json").exists()
    overridden = _expc("run", spec, "--set", "train.lr=1e-2", "--out", out, cwd=tmp_path)
    assert overridden.returncode == 0
    folders = sorted(p.name for p in out.iterdir())
    assert (
        folders[0] == "tiny" and folders[1].startswith("tiny@set-") and folders[2] == "tiny@smoke"
    )
    assert "Profile: `smoke`" in (out / "tiny@smoke/report.md").read_text()
    listed = run_cli("runs", out)
    assert "smoke" in listed.output and "train.lr=1e-2" in listed.output


def test_a_finished_run_is_replaced_only_with_force_which_says_what_changes(tmp_path: Path) -> None:
    spec = _write(tmp_path, "s.exp", MINIMAL)
    out = tmp_path / "runs"
    assert _expc("run", spec, "--out", out, cwd=tmp_path).returncode == 0
    rows = (out / "tiny/main/metrics.jsonl").read_bytes()
    spec.write_text(MINIMAL.replace("steps = 2", "steps = 3"))
    refused = _expc("run", spec, "--out", out, cwd=tmp_path)
    assert refused.returncode == 1
    assert "finished earlier with another config (train.steps 2 -> 3)" in refused.stdout
    assert "`--force` replaces it" in refused.stdout
    assert (out / "tiny/main/metrics.jsonl").read_bytes() == rows
    forced = _expc("run", spec, "--out", out, "--force", cwd=tmp_path)
    assert forced.returncode == 0
    assert "replacing the finished run (--force): train.steps 2 -> 3" in forced.stdout
    assert json.loads((out / "tiny/main/summary.json").read_text())["step"] == 3


def test_running_a_spec_from_a_temporary_folder_leaves_the_repository_clean(tmp_path: Path) -> None:
    def status() -> str:
        return subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=all"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout

    before = status()
    spec = _write(tmp_path, "elsewhere.exp", MINIMAL.replace("tiny", "elsewhere_exp"))
    result = _expc("run", spec, "--smoke", "--out", tmp_path / "runs")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "runs/elsewhere_exp@smoke/code/elsewhere_exp/train.py").exists()
    assert not (ROOT / "generated/elsewhere_exp").exists()
    assert status() == before
    refused = run_cli("compile", spec)
    assert refused.exit_code == 1 and "is outside specs/" in refused.output


def test_a_set_that_the_code_cannot_run_is_blamed_on_set_under_a_profile(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    result = run_cli(
        "run",
        "specs/gated_attention.exp",
        "--smoke",
        "--set",
        "model.norm=layernorm",
        "--out",
        out,
        "--generated",
        tmp_path / "gen",
    )
    assert result.exit_code == 1
    assert "--set sets `model.norm`" in result.output
    assert "profile `smoke` sets" not in result.output


def test_when_every_run_fails_no_report_is_written_and_the_cli_says_so(tmp_path: Path) -> None:
    spec = _write(
        tmp_path,
        "s.exp",
        MINIMAL.replace(
            "data text { context = 16 }", 'data text { corpus = "gone.txt" context = 16 }'
        ),
    )
    result = _expc("run", spec, "--out", tmp_path / "runs", cwd=tmp_path)
    assert result.returncode == 1
    assert "none finished" in result.stderr and "others finished" not in result.stderr
    assert not (tmp_path / "runs/tiny/report.md").exists()


def test_a_missing_spec_and_a_spec_outside_the_folder_are_named_in_full(tmp_path: Path) -> None:
    missing = run_cli("run", tmp_path / "nope.exp")
    assert missing.exit_code == 1
    assert f"no spec file at {tmp_path / 'nope.exp'}" in missing.output
    assert "Errno" not in missing.output
    bad = _write(tmp_path, "bad.exp", MINIMAL.replace("layers = 1", "layers = 0"))
    result = run_cli("check", bad, "-o", tmp_path / "gen")
    assert f"--> {bad}:4:" in result.output


def test_resume_refuses_a_checkpoint_taken_with_another_config(tmp_path: Path) -> None:
    spec = _write(tmp_path, "s.exp", MINIMAL)
    out = tmp_path / "runs"
    assert _expc("run", spec, "--out", out, cwd=tmp_path).returncode == 0
    (out / "tiny/main/summary.json").unlink()  # as if killed after its last checkpoint
    rows = (out / "tiny/main/metrics.jsonl").read_bytes()
    spec.write_text(MINIMAL.replace("steps = 2", "steps = 3"))
    refused = _expc("run", spec, "--out", out, "--resume", cwd=tmp_path)
    assert refused.returncode == 1
    assert "cannot resume: its checkpoint was taken with another config" in refused.stdout
    assert "train.steps 2 -> 3" in refused.stdout
    assert (out / "tiny/main/metrics.jsonl").read_bytes() == rows
    forced = _expc("run", spec, "--out", out, "--resume", "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert "starting again from step 0 (--force)" in forced.stdout
    steps = [json.loads(line)["step"] for line in (out / "tiny/main/metrics.jsonl").open()]
    assert steps == [1, 2, 3]


def test_the_folder_of_set_overrides_does_not_depend_on_their_order() -> None:
    from expc.runner import experiment_folder

    one = experiment_folder("x", "smoke", ["a.b=1", "c=2"])
    assert one == experiment_folder("x", "smoke", ["c = 2", "a.b=1"])
    assert one == experiment_folder("x", "smoke", ["a.b=5", "c=2", "a.b=1"])  # the last wins
    assert one != experiment_folder("x", "smoke", ["a.b=2", "c=2"])
    assert experiment_folder("x", None, []) == "x" and experiment_folder("x", "p", []) == "x@p"


def test_a_nul_byte_in_an_extended_path_is_a_located_error(tmp_path: Path) -> None:
    path = _write(tmp_path, "n.exp", 'extends "\x00x.exp"\n' + MINIMAL)
    assert "not a usable file path" in _errors(path)
    refs = _hivemind(tmp_path, "r.exp", 'run("\x00x", "a")')
    assert "not a usable file path" in _errors(refs)


PRETRAIN = """\
experiment pre {}
data text { context = 16 }
model transformer { layers = 1 width = 16 heads = 2 }
objective next_token {}
train { steps = 6 batch_size = 2 eval_every = 3 eval_batches = 1 }
target cpu {}
"""


def _pretrain_and_finetune(folder: Path) -> Path:
    """pre.exp, and ft.exp: one step at lr 1e-9 from pre's weights, on other data."""
    _write(folder, "pre.exp", PRETRAIN)
    return _write(
        folder,
        "ft.exp",
        'extends "pre.exp"\nexperiment ft {}\n'
        "data arithmetic { demonstrations = 200 context = 16 }\n"
        'train { init = run("pre", "main") steps = 1 lr = 1e-9 warmup = 0 weight_decay = 0 '
        "eval_every = 1 }\n",
    )


def test_a_run_starts_from_another_experiments_weights(tmp_path: Path) -> None:
    import torch

    finetune = _pretrain_and_finetune(tmp_path)
    out = tmp_path / "runs"
    result = _expc("run", finetune, "--out", out, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ft reads pre/main" in result.stdout
    before = torch.load(out / "pre/main/checkpoint.pt", weights_only=False)["model"]
    after = torch.load(out / "ft/main/checkpoint.pt", weights_only=False)["model"]
    assert before.keys() == after.keys()
    for key in before:  # one step at lr 1e-9 from the pretrained weights
        torch.testing.assert_close(after[key], before[key], atol=1e-6, rtol=0)
    config = json.loads((out / "ft/main/config.json").read_text())
    assert config["train"]["init"] == str(out / "pre/main")


def test_a_seeded_pipeline_finetunes_each_seed_from_the_pretrained_run_of_that_seed(
    tmp_path: Path,
) -> None:
    import torch

    finetune = _pretrain_and_finetune(tmp_path)
    out = tmp_path / "runs"
    # --jobs 2: the upstream seeds train in child processes, told the seeds to train.
    result = _expc("run", finetune, "--out", out, "--seeds", "2", "--jobs", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ft reads pre/seed_0, pre/seed_1" in result.stdout
    starts = {}
    for seed in (0, 1):
        before = torch.load(out / f"pre/seed_{seed}/checkpoint.pt", weights_only=False)["model"]
        after = torch.load(out / f"ft/seed_{seed}/checkpoint.pt", weights_only=False)["model"]
        for key in before:  # one step at lr 1e-9 from the pretrained weights of its seed
            torch.testing.assert_close(after[key], before[key], atol=1e-6, rtol=0)
        config = json.loads((out / f"ft/seed_{seed}/config.json").read_text())
        assert config["train"]["init"] == str(out / f"pre/seed_{seed}")
        assert [r["run"] for r in config["upstream"]] == [f"seed_{seed}"]
        starts[seed] = before
    assert any(not torch.equal(starts[0][k], starts[1][k]) for k in starts[0])
    # A third seed trains one more pretraining run and one more finetuning run, no others.
    more = _expc("run", finetune, "--out", out, "--seeds", "0,1,2", cwd=tmp_path)
    assert more.returncode == 0, more.stdout + more.stderr
    assert "ft reads pre/seed_0, pre/seed_1, pre/seed_2" in more.stdout
    assert more.stdout.count("finished earlier with this config, skipped") == 4
    assert (out / "ft/seed_2/summary.json").exists()


def test_a_run_loads_weights_only_from_the_same_model(tmp_path: Path) -> None:
    _write(tmp_path, "pre.exp", PRETRAIN)
    path = _write(
        tmp_path,
        "ft.exp",
        'extends "pre.exp"\nexperiment ft {}\ntrain.init = run("pre", "main")\n'
        "variant wide { model.width = 32 }\n",
    )
    text = _errors(path)
    assert "pre.exp has another model: `model.width` 16 there, 32 here" in text
    assert "ft.exp:3:14" in text
    # A spec that sets no init generates no init code.
    plain = _resolve(_write(tmp_path, "plain.exp", PRETRAIN))
    from expc.compiler import compile_source

    code = compile_source(SourceFile.read(tmp_path / "plain.exp")).files["pre/train.py"]
    assert "init" not in code.split("class TrainConfig")[1].split("class")[0] and plain.runs


def test_an_unknown_profile_lists_each_profile_once_and_writes_nothing(tmp_path: Path) -> None:
    spec = _write(tmp_path, "s.exp", BASE)
    result = _expc("run", spec, "--profile", "nope", "--out", tmp_path / "runs", cwd=tmp_path)
    assert result.returncode == 1
    assert "profiles in s.exp: `fast`, `smoke`\n" in result.stderr
    assert not (tmp_path / "runs").exists()
