"""`expc report` on hostile metrics.jsonl files: runs are data, never code.

Metric names must not become paths outside the experiment folder, rows and values the report
cannot use are skipped with a warning instead of a traceback, and report.md stays a small,
well-formed table whatever the files hold.
"""

from __future__ import annotations

import json
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from expc.runtime.metrics import read_metrics
from expc.runtime.report import write_report

SAFE_PNG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}\.png")


def write_run(experiment: Path, name: str, lines: list[str], config: Any = None) -> Path:
    run = experiment / name
    run.mkdir(parents=True, exist_ok=True)
    (run / "metrics.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    if config is not None:
        (run / "config.json").write_text(json.dumps(config))
    return run


def rows(*objects: Any) -> list[str]:
    return [json.dumps(o) for o in objects]


def files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def contents(paths: set[Path]) -> dict[Path, bytes | None]:
    return {p: p.read_bytes() if p.is_file() else None for p in paths}


def cells(line: str) -> list[str]:
    """The cells of a markdown table row: split at `|` that no backslash escapes."""
    assert line.startswith("|") and line.endswith("|"), line
    out, cell, escaped = [], "", False
    for char in line[1:-1]:
        if escaped:
            cell, escaped = cell + char, False
        elif char == "\\":
            cell, escaped = cell + char, True
        elif char == "|":
            out.append(cell)
            cell = ""
        else:
            cell += char
    return [*out, cell]


def table(report: str, header_start: str = "| run |") -> list[list[str]]:
    """The final-metrics table: its header and rows, each as cells."""
    lines = report.split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    body = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        body.append(cells(line))
    return body


def report_of(experiment: Path, match: str | None) -> str:
    """write_report's text; with `match`, a warning matching it must be given."""
    if match is None:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # normal metrics: no warning at all
            return write_report(experiment).read_text(encoding="utf-8")
    with pytest.warns(UserWarning, match=match):
        return write_report(experiment).read_text(encoding="utf-8")


def test_metric_names_never_become_paths_outside_the_experiment(tmp_path: Path) -> None:
    experiment = tmp_path / "runs" / "exp"
    outside = tmp_path / "outside"
    outside.mkdir()
    names = [
        "../../x",  # two folders up: tmp_path/x.png before
        "../sibling",
        f"{outside}/abs",  # an absolute path: outside/abs.png before
        "a/b",  # a missing folder: FileNotFoundError before
        "a?b",  # sanitises like "a/b": must not overwrite its plot
        "..",
        ".hidden",
        "nul\x00byte",
        "é" * 300,  # long and not ASCII
        "val_loss",
    ]
    write_run(experiment, "r", rows(*({"step": s, **{n: float(s) for n in names}} for s in (1, 2))))
    before = files(tmp_path) - files(experiment)
    text = write_report(experiment).read_text(encoding="utf-8")
    assert files(tmp_path) - files(experiment) == before  # nothing written outside
    pngs = [p for p in experiment.iterdir() if p.suffix == ".png"]
    assert all(p.resolve().is_relative_to(experiment.resolve()) for p in pngs)
    assert all(SAFE_PNG.fullmatch(p.name) for p in pngs), sorted(p.name for p in pngs)
    assert len(pngs) == len(names)  # one plot per metric: none overwrote another
    assert (experiment / "val_loss.png").exists()  # a safe name is kept as it is
    for png in pngs:
        assert f"({png.name})" in text


def test_symlinked_outputs_are_not_written_through(tmp_path: Path) -> None:
    experiment = tmp_path / "exp"
    write_run(experiment, "r", rows({"step": 1, "val_loss": 2.0}, {"step": 2, "val_loss": 1.0}))
    target, report_target = tmp_path / "target.png", tmp_path / "target.md"
    target.write_text("keep")
    report_target.write_text("keep")
    (experiment / "val_loss.png").symlink_to(target)
    (experiment / "report.md").symlink_to(report_target)
    with pytest.warns(UserWarning, match="outside the experiment folder"):
        report = write_report(experiment)
    assert target.read_text() == "keep" and report_target.read_text() == "keep"
    assert not report.is_symlink() and "| r | 2 | 1.0000 |" in report.read_text()


@pytest.mark.parametrize("number", ["1e999", "-1e999", "NaN", "Infinity", "1" * 400])
def test_non_finite_values_are_skipped_with_a_warning(tmp_path: Path, number: str) -> None:
    # 1e999 parses as inf, a 400-digit integer is too large for a float.
    lines = ['{"step": 1, "val_loss": 2.0}', '{"step": 2, "val_loss": ' + number + "}"]
    write_run(tmp_path, "r", lines)
    text = report_of(tmp_path, "not finite")
    assert table(text)[2] == [" r ", " 2 ", " n/a "]
    assert "inf" not in text.lower() and "Skipped" in text


@pytest.mark.parametrize("value", [{"a": 1}, [1, 2], [[1], {"b": None}]])
def test_nested_values_are_skipped_with_a_warning(tmp_path: Path, value: Any) -> None:
    write_run(tmp_path, "r", rows(*({"step": s, "v": value, "w": float(s)} for s in (1, 2))))
    text = report_of(tmp_path, "nested value")
    assert table(text)[2] == [" r ", " 2 ", " n/a ", " 2.0000 "]
    assert (tmp_path / "w.png").exists()


def test_rows_without_a_step_are_skipped_with_a_warning(tmp_path: Path) -> None:
    lines = rows(
        {"step": 1, "val_loss": 3.0},
        {"step": 2, "val_loss": 2.0},
        {"val_loss": 9.0},  # KeyError: 'step' before
        {"step": "three", "val_loss": 8.0},
        {"step": None, "val_loss": 7.0},
    )
    write_run(tmp_path, "r", lines)
    text = report_of(tmp_path, "without a numeric step")
    assert "| r | 2 | 2.0000 |" in text  # the last row with a step is the final one
    assert (tmp_path / "val_loss.png").exists()


def test_rows_that_are_not_objects_are_skipped(tmp_path: Path) -> None:
    lines = [
        '{"step": 1, "val_loss": 3.0}',
        "3",  # TypeError before: a bare number is no row
        "[1, 2]",
        '"text"',
        "null",
        "true",
        "{torn",
        "9" * 5000,  # ValueError (int digit limit) before, not a JSONDecodeError
        "[" * 100_000 + "]" * 100_000,  # RecursionError before
        '{"step": 2, "val_loss": 2.0}',
    ]
    run = write_run(tmp_path, "r", lines)
    assert read_metrics(run) == [{"step": 1, "val_loss": 3.0}, {"step": 2, "val_loss": 2.0}]
    text = report_of(tmp_path, "not an object")
    assert "| r | 2 | 2.0000 |" in text
    assert "line 2" in text and "not valid JSON" in text


def test_a_torn_last_line_is_skipped_quietly(tmp_path: Path) -> None:
    run = tmp_path / "r"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"step": 1, "val_loss": 2.0}\n{"step": 2, "val_lo')
    assert read_metrics(run) == [{"step": 1, "val_loss": 2.0}]
    assert "Skipped" not in report_of(tmp_path, None)  # a killed run is nothing to warn of


def test_huge_values_and_names_give_a_small_report(tmp_path: Path) -> None:
    big = "x" * 5_000_000  # a 5 MB value was a 5 MB report.md before
    long_a, long_b = "m" * 1000 + "a", "m" * 1000 + "b"  # the same first 1000 characters
    write_run(tmp_path, "r", rows({"step": 1, "note": big, long_a: 1.0, long_b: 2.0}))
    text = report_of(tmp_path, "elided")
    assert len(text.encode()) < 5_000
    header, _, row = table(text)
    assert all(len(cell.strip()) <= 200 for cell in header + row)
    names = [cell.strip() for cell in header if cell.strip().startswith("mmm")]
    assert len(names) == 2 and len(set(names)) == 2  # cut, told apart by a hash
    assert all(len(name) <= 64 for name in names)
    assert "xxx…" in text


def test_pipes_newlines_and_backticks_do_not_break_the_table(tmp_path: Path) -> None:
    key = "a|b\nc`d\\"
    value = "x|y\r\nz\u2028`w`\\|"
    write_run(tmp_path, "r|s", rows({"step": 1, key: value, "ok": 1.5}))
    text = report_of(tmp_path, None)
    header, rule, row = table(text)
    assert len(header) == len(rule) == len(row) == 4  # run, step, ok, the hostile one
    assert row[0] == r" r\|s " and row[3] == " 1.5000 "
    assert header[2] == r" a\|b c\`d\\ " and row[2] == r" x\|y  z \`w\`\\\| "
    assert "\u2028" not in text and "\r" not in text


def test_backend_reports_skip_rows_and_values_they_cannot_use(tmp_path: Path) -> None:
    from expc.runtime.crl.report import analyse as crl_analyse
    from expc.runtime.diffusion.report import analyse as diffusion_analyse

    hostile = [
        {"step": 1, "success_rate": 0.1, "memorization": 0.0, "quality": 9.0},
        {"step": "2", "success_rate": 0.2},  # TypeError before (str > int)
        {"step": 3, "success_rate": {"a": 1}, "memorization": [1], "quality": 1e999},
        {"step": 3, "memorization": 0.5, "quality": 2.0},  # not after the one before
        {"step": 4, "success_rate": 0.4, "memorization": 1.0, "quality": 1.0},
        {"success_rate": 0.9},  # KeyError: 'step' before
    ]
    crl = tmp_path / "crl"
    write_run(crl, "depth_4", rows(*hostile), {"model": {"depth": 4}})
    write_run(crl, "depth_8", rows(*hostile), {"model": {"depth": "eight"}})
    write_run(crl, "depth_16", rows(*hostile), ["not", "an", "object"])
    text = "\n".join(crl_analyse(crl))
    assert "| 4 | 0.400 | 0.400 |" in text and "| 8 |" not in text
    diffusion = tmp_path / "diffusion"
    config = {"data": {"n": 8}, "train": {"steps": 4}}
    write_run(diffusion, "n_8", rows(*hostile), config)
    write_run(diffusion, "n_9", rows(*hostile), {"data": {"n": "nine"}})
    text = "\n".join(diffusion_analyse(diffusion))
    assert "| n_8 | 8 | 4 |" in text and "n_9" not in text


def test_rlvr_and_hivemind_reports_skip_files_they_cannot_use(tmp_path: Path) -> None:
    from expc.runtime.hivemind.report import analyse as hivemind_analyse
    from expc.runtime.rlvr.report import analyse as rlvr_analyse

    run = write_run(tmp_path, "r", rows({"step": 1}), {"objective": {}})
    for bad in ({"ks": [1], "base": {}, "rl": {}}, [1, 2], {"ks": "x"}):
        (run / "passk.json").write_text(json.dumps(bad))
        assert "No run has finished" in rlvr_analyse(tmp_path)[0]  # KeyError before
        (run / "metrics.json").write_text(json.dumps(bad))
        with pytest.warns(UserWarning, match="metrics.json not used"):
            assert hivemind_analyse(tmp_path) == []


# --- hostile files of any shape -----------------------------------------------------------

OUT = "@OUTSIDE@"  # replaced by a folder outside the experiment when written
HOSTILE_KEYS = st.one_of(
    st.sampled_from(
        [
            "step",
            "val_loss",
            "train_loss",
            "elapsed_s",
            "tokens",
            "..",
            ".",
            "",
            "../x",
            "../../x",
            f"{OUT}/abs",
            f"{OUT}/../x",
            "a/b",
            "a\\b",
            "nul\x00",
            "a|b",
            "line\nbreak",
            "`tick`",
            "$\\frac{$",
            "\u2028",
            "\ud800",
            "é" * 80,
            "k" * 5000,
            "CON",
            "report",
            "x.png",
            "val_loss_x2",
            "val_loss_x0",
            "val_loss_x4_yarn",
            "val_loss_x99999999999999999999_pi",
            "loss_spikes",
            "diverged",
        ]
    ),
    st.text(max_size=12),
)
NUMBERS = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.integers(min_value=10**300, max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e308, -1e308, 5e-324, 0.0]),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=20), st.just("y" * 500))
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(HOSTILE_KEYS, inner, max_size=3)
    ),
    max_leaves=8,
)
ROW = st.one_of(
    st.fixed_dictionaries(
        {"step": st.one_of(st.integers(-3, 20), JSON)},
        optional={"val_loss": JSON},
    ).flatmap(
        lambda base: st.dictionaries(HOSTILE_KEYS, JSON, max_size=4).map(
            lambda extra: {**base, **extra}
        )
    ),
    JSON,
)
LINE = st.one_of(
    ROW.flatmap(lambda row: st.booleans().map(lambda ascii: json.dumps(row, ensure_ascii=ascii))),
    st.text(max_size=30),  # garbage
    st.sampled_from(['{"step": 1e999}', '{"step": 1, "v": -Infinity}', "{", "", "\x00"]),
)
RUN = st.lists(LINE, max_size=8)
BACKENDS = st.sampled_from(
    [None, "crl.report:analyse", "diffusion.report:analyse", "next_token_report:analyse"]
)
CONFIG = {
    "name": "a",
    "model": {"depth": 4},
    "data": {"n": 8},
    "train": {"steps": 10, "lr": 0.01},
}
CONFIGS = st.one_of(st.just(CONFIG), JSON)  # what the backends' analyses read too


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(first=RUN, second=RUN, backend=BACKENDS, seeds=st.booleans(), config=CONFIGS)
def test_any_metrics_files_give_a_bounded_report_inside_the_folder(
    first: list[str], second: list[str], backend: str | None, seeds: bool, config: Any
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        outside = base / "outside"
        outside.mkdir()
        (outside / "kept.png").write_text("kept")
        experiment = base / "runs" / "exp"
        names = ["a-seed_1", "a-seed_2"] if seeds else ["a|b", "c\nd"]
        for name, lines in zip(names, (first, second), strict=True):
            run = experiment / name
            run.mkdir(parents=True)
            text = "\n".join(lines).replace(OUT, str(outside))
            (run / "metrics.jsonl").write_bytes(text.encode("utf-8", "surrogatepass"))
            (run / "config.json").write_text(json.dumps(config))
        if backend:
            spec = {"runs": names[::-1], "report": f"expc.runtime.{backend}"}
            (experiment / "spec.json").write_text(json.dumps(spec))
        before_outside = contents(files(base) - files(experiment))
        before_inside = files(experiment)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            report = write_report(experiment)
        after_outside = contents(files(base) - files(experiment))
        assert after_outside == before_outside
        assert report == experiment / "report.md"
        for new in files(experiment) - before_inside:
            assert new.parent == experiment, new
            assert new.name == "report.md" or SAFE_PNG.fullmatch(new.name), new.name
        text = report.read_text(encoding="utf-8")
        assert len(text.encode()) < 100_000
        if "| run |" in text:  # every table row is whole: as many cells as the header
            header, *body = table(text)
            assert all(len(row) == len(header) for row in body)


def test_next_token_analyses_skip_values_they_cannot_use(tmp_path: Path) -> None:
    from expc.runtime.next_token_report import analyse

    last = {
        "step": 2,
        "val_loss": 1.5,
        "val_loss_x2": 1.7,
        "val_loss_x0": 9.0,  # no such context multiple
        "val_loss_x4": "high",
        "val_loss_x4_yarn": 1e999,
        "val_loss_x2_pi": None,
    }
    for seed, lr in ((1, 0.01), (2, 0.01), (1, "fast"), (1, 1e999)):
        config = {"name": "v|a", "seed": seed, "train": {"lr": lr}}
        write_run(tmp_path, f"v|a-lr_{lr}-seed_{seed}", rows({"step": 1}, last), config)
    text = "\n".join(analyse(tmp_path))
    # x0, a string and inf are skipped; the two seeds agree, so their interval is 0
    assert "| v\\|a-lr_0.01 | 2× | 1.7000 ± 0.0000 |" in text
    assert "x0" not in text and "0×" not in text and "4×" not in text
    assert "## Learning-rate stability" in text and "| fast |" not in text
    assert (tmp_path / "context_extension.png").is_file()
