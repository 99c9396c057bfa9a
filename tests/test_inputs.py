"""Local input files a spec names are checked before any run starts, each missing one a
located error (expc/compiler/inputs.py), instead of failing deep inside its run."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import numpy as np
import pytest
from conftest import MINIMAL

from expc.compiler import components, ir, resolve
from expc.compiler.components import registry
from expc.compiler.diagnostics import Diagnostic
from expc.compiler.inputs import missing_inputs
from expc.compiler.source import SourceFile

NEXT_TOKEN = MINIMAL.replace("data text { context = 16 }", "data text { context = 16 CORPUS }")
HIVEMIND = """\
experiment hm {}
data prompts { source = SOURCE }
model generators {
  jsonl = [JSONL]
}
objective hivemind {}
"""
DIFFUSION = """\
experiment tiny {}
data images { n = 8 path = PATH }
model unet { width = 16 }
objective diffusion {}
"""


def _spec(text: str) -> ir.Spec:
    spec, _ = resolve(SourceFile("test.exp", text))
    return spec


def _next_token(corpus: str, extra: str = "") -> ir.Spec:
    return _spec(NEXT_TOKEN.replace("CORPUS", f"corpus = {corpus}") + extra)


def _hivemind(source: str = '"builtin"', jsonl: str = '"a.jsonl"') -> ir.Spec:
    return _spec(HIVEMIND.replace("SOURCE", source).replace("JSONL", jsonl))


def _at(diagnostic: Diagnostic) -> tuple[int, int, int]:
    assert diagnostic.span is not None
    return diagnostic.span.line, diagnostic.span.column, diagnostic.span.end_column


def test_a_missing_corpus_is_one_error_at_its_value(tmp_path: Path) -> None:
    spec = _next_token('"missing.txt"')
    [found] = missing_inputs(spec, tmp_path)
    assert found.message == "no such file: missing.txt (data.corpus)"
    assert found.span is not None and found.span.file == "test.exp"
    # data text { context = 16 corpus = "missing.txt" }: the string, quotes included
    line = NEXT_TOKEN.splitlines()[1].replace("CORPUS", 'corpus = "missing.txt"')
    column = line.index('"missing.txt"') + 1
    assert _at(found) == (2, column, column + len('"missing.txt"'))
    assert "`expc run` starts in" in (found.help or "")
    assert str(tmp_path.resolve()) in (found.help or "")
    assert '"pydoc_data.topics"' in (found.help or "")


def test_an_existing_corpus_relative_to_the_working_directory_passes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "book.txt").write_text("text " * 300)
    monkeypatch.chdir(tmp_path)
    spec = _next_token('"corpus/book.txt"')
    assert missing_inputs(spec, Path.cwd()) == []
    assert missing_inputs(spec, Path(".")) == []
    # The same spec from another folder: the file is not there.
    [found] = missing_inputs(spec, tmp_path / "corpus")
    assert found.message == "no such file: corpus/book.txt (data.corpus)"


def test_an_absolute_path_is_taken_as_it_is(tmp_path: Path) -> None:
    book = tmp_path / "book.txt"
    book.write_text("text " * 300)
    spec = _next_token(f'"{book}"')
    assert missing_inputs(spec, tmp_path / "elsewhere") == []
    book.unlink()
    [found] = missing_inputs(spec, tmp_path)
    assert found.message == f"no such file: {book} (data.corpus)"


def test_the_builtin_corpus_names_no_file(tmp_path: Path) -> None:
    assert missing_inputs(_next_token('"pydoc_data.topics"'), tmp_path) == []
    assert missing_inputs(_spec(MINIMAL), tmp_path) == []  # the default


def test_a_folder_where_the_loader_reads_a_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "book.txt").mkdir()
    [found] = missing_inputs(_next_token('"book.txt"'), tmp_path)
    assert found.message == "a folder, not a file: book.txt (data.corpus)"


def test_a_value_set_only_in_a_variant_is_checked_at_the_variant(tmp_path: Path) -> None:
    (tmp_path / "base.txt").write_text("text " * 300)
    variant = 'variant other { data.corpus = "other.txt" }\n'
    spec = _next_token('"base.txt"', variant)
    [found] = missing_inputs(spec, tmp_path)
    assert found.message == "no such file: other.txt (data.corpus)"
    line = len(NEXT_TOKEN.splitlines()) + 1
    column = variant.index('"other.txt"') + 1
    assert _at(found) == (line, column, column + len('"other.txt"'))


def test_one_error_per_missing_value_however_many_runs_read_it(tmp_path: Path) -> None:
    # Two runs (the sweep's points) read the base's missing corpus; the sweep names two more.
    spec = _next_token('"a.txt"', "sweep s { train.steps = [2, 3] }\n")
    assert len(spec.runs) == 2
    assert [d.message for d in missing_inputs(spec, tmp_path)] == [
        "no such file: a.txt (data.corpus)"
    ]
    sweep = 'sweep s { data.corpus = ["b.txt", "c.txt"] }\n'
    found = missing_inputs(_next_token('"a.txt"', sweep), tmp_path)  # no run reads a.txt
    assert [d.message for d in found] == [
        "no such file: b.txt (data.corpus)",
        "no such file: c.txt (data.corpus)",
    ]
    line = len(NEXT_TOKEN.splitlines()) + 1
    assert [_at(d)[:2] for d in found] == [(line, sweep.index(f'"{n}.txt"') + 1) for n in "bc"]


def test_a_missing_answers_file_is_located_at_its_element(tmp_path: Path) -> None:
    (tmp_path / "here.jsonl").write_text("")
    spec = _hivemind(jsonl='"here.jsonl", "gone.jsonl"')
    [found] = missing_inputs(spec, tmp_path)
    assert found.message == "no such file: gone.jsonl (model.jsonl)"
    line = HIVEMIND.splitlines()[3].replace("JSONL", '"here.jsonl", "gone.jsonl"')
    column = line.index('"gone.jsonl"') + 1
    assert _at(found) == (4, column, column + len('"gone.jsonl"'))
    assert "built-in" not in (found.help or "")


def test_prompts_builtin_or_a_jsonl_or_csv_file(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text("")
    assert missing_inputs(_hivemind(), tmp_path) == []
    [found] = missing_inputs(_hivemind('"prompts.csv"'), tmp_path)
    assert found.message == "no such file: prompts.csv (data.source)"
    assert _at(found)[0] == 2
    assert '"builtin"' in (found.help or "")
    (tmp_path / "prompts.csv").write_text("prompt\nhello\n")
    assert missing_inputs(_hivemind('"prompts.csv"'), tmp_path) == []
    # The loader reads only .jsonl and .csv files.
    (tmp_path / "prompts.txt").write_text("hello\n")
    [found] = missing_inputs(_hivemind('"prompts.txt"'), tmp_path)
    assert found.message == "not a .jsonl or .csv file: prompts.txt (data.source)"


def test_image_data_is_a_folder_or_a_npy_file(tmp_path: Path) -> None:
    def spec(path: str) -> ir.Spec:
        return _spec(DIFFUSION.replace("PATH", f'"{path}"'))

    [found] = missing_inputs(spec("faces.npy"), tmp_path)
    assert found.message == "no such file or folder: faces.npy (data.path)"
    assert _at(found)[0] == 2
    np.save(tmp_path / "faces.npy", np.zeros((2, 4, 4), dtype=np.uint8))
    (tmp_path / "pngs").mkdir()
    assert missing_inputs(spec("faces.npy"), tmp_path) == []
    assert missing_inputs(spec("pngs"), tmp_path) == []
    (tmp_path / "faces.png").write_bytes(b"")
    [found] = missing_inputs(spec("faces.png"), tmp_path)
    assert found.message == "not a .npy file or a folder: faces.png (data.path)"
    # `data shapes` (path "") reads nothing.
    shapes = "experiment d {}\ndata shapes {}\nmodel unet {}\nobjective diffusion {}\n"
    assert missing_inputs(_spec(shapes), tmp_path) == []


def _node_classes(model: type[ir.Node], seen: set[type[ir.Node]]) -> set[type[ir.Node]]:
    """`model` and every block class under it (families and data kinds included)."""
    if model in seen:
        return seen
    seen.add(model)
    for name in ir.user_fields(model):
        annotation = model.model_fields[name].annotation
        block = ir.block_class(annotation)
        # A family union (`model generators | pretrained`) holds its classes as arguments.
        members = [
            a for a in get_args(annotation) if isinstance(a, type) and issubclass(a, ir.Node)
        ]
        for inner in (
            *ir.labelled_choices(annotation).values(),
            *([block] if block else []),
            *members,
        ):
            _node_classes(inner, seen)
    return seen


def test_exactly_the_fields_that_name_local_files_are_marked() -> None:
    nodes: set[type[ir.Node]] = set()
    for objective in components.all_objectives().values():
        _node_classes(components.config_class(objective), nodes)
    names = {n.__name__ for n in nodes}
    assert {"TextData", "ImageData", "Prompts", "Generators", "Pretrained"} <= names
    marked = {
        (node.__name__, name): builtins
        for node in nodes
        for name in ir.user_fields(node)
        if (builtins := ir.input_file_builtins(node, name)) is not None
    }
    assert marked == {
        ("TextData", "corpus"): ("pydoc_data.topics",),
        ("ImageData", "path"): (),
        ("Prompts", "source"): ("builtin",),
        ("Generators", "jsonl"): (),
        ("Generators", "gguf"): (),
        ("Pretrained", "gguf"): (),
    }
    # Run folders are checked where `expc run` resolves them, not as input files; a field
    # that was structural stays structural.
    generators = registry.all_architectures()["generators"].node
    assert ir.input_file_builtins(generators, "checkpoints") is None
    assert ir.is_structural(generators, "jsonl")
