"""What keeps a cold `expc compile` fast never changes what it produces: the parser tables
shipped beside the grammar (stale or corrupt ones are rebuilt from the grammar), the
per-user compile cache (stale, corrupt or unwritable), the parse of a file shared by the
specs that read it, and the CLI not importing rich when it has nothing to report."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
from pathlib import Path

import lark
import pytest
from conftest import ROOT, SPECS

from expc import compiler
from expc.compiler import parse as P
from expc.compiler import parse_tables
from expc.compiler.source import SourceFile

GOLDEN_ERRORS = sorted((ROOT / "tests" / "golden" / "errors").glob("*.exp"))


def _shipped() -> lark.Lark | None:
    return P._shipped_parser(P.tables_key(P._grammar()))


def _dump(node: lark.Tree | lark.Token) -> tuple:
    """A tree with every position in it (Tree equality ignores positions)."""
    if isinstance(node, lark.Token):
        return (node.type, str(node), node.line, node.column, node.end_line, node.end_column)
    fields = ("line", "column", "end_line", "end_column", "start_pos", "end_pos")
    where = tuple(getattr(node.meta, name, None) for name in fields)  # none for an empty spec
    return (node.data, where, tuple(_dump(child) for child in node.children))


def _outcome(parser: lark.Lark, text: str) -> tuple:
    try:
        return ("tree", _dump(parser.parse(text)))
    except lark.exceptions.UnexpectedInput as error:
        expected = sorted(getattr(error, "expected", ()) or ())
        return (type(error).__name__, error.line, error.column, expected)


def _lexed(parser: lark.Lark, text: str) -> tuple:
    try:
        return ("tokens", tuple(_dump(t) for t in parser.lex(text, dont_ignore=True)))
    except lark.exceptions.UnexpectedInput as error:
        return (type(error).__name__, error.line, error.column)


@pytest.fixture
def fresh_parser():
    """Forget the process's parser before and after (a test may make it from elsewhere)."""
    P._parser.cache_clear()
    P._parse.cache_clear()
    yield
    P._parser.cache_clear()
    P._parse.cache_clear()


def test_shipped_tables_are_those_of_the_grammar_and_this_lark() -> None:
    stale = "expc/compiler/parse_tables.py is stale: `python -m expc.compiler.parse` rebuilds it"
    assert parse_tables.KEY == P.tables_key(P._grammar()), stale
    assert _shipped() is not None


def test_the_shipped_tables_module_is_what_the_generator_writes() -> None:
    """The generator's output is lint- and format-clean as written (ruff checks the tree)."""
    text = P.tables_module(P._grammar())
    module = Path(parse_tables.__file__).read_text(encoding="utf-8")
    # The pickle's bytes may differ from one build to the next (Lark numbers its states in
    # set order); the key and the layout do not.
    assert text.splitlines()[:9] == module.splitlines()[:9]
    assert P.load_tables(base64.b64decode(text.split('TABLES = """')[1])) is not None


def test_shipped_tables_parse_every_spec_and_bad_spec_as_the_grammar_does() -> None:
    shipped = _shipped()
    built = P.build_parser(P._grammar())
    assert shipped is not None
    texts = [path.read_text() for path in [*SPECS, *GOLDEN_ERRORS]]
    texts += ["", "a = ", 'extends "x.exp"\nremove a.b\n', 'm { x = [1, run("a", 2),] }']
    for text in texts:
        assert _outcome(shipped, text) == _outcome(built, text)
        assert _lexed(shipped, text) == _lexed(built, text)  # as `expc fmt` lexes


def test_corrupt_or_truncated_tables_are_refused() -> None:
    data = P.dump_tables(P.build_parser(P._grammar()))
    assert P.load_tables(data) is not None
    assert P.load_tables(b"not a pickle at all") is None
    assert P.load_tables(data[: len(data) // 2]) is None
    assert P.load_tables(b"") is None


@pytest.mark.parametrize(
    "damage", ["another key", "no key", "corrupt", "truncated", "not base64", "missing"]
)
def test_bad_shipped_tables_fall_back_to_the_grammar(
    damage: str, monkeypatch: pytest.MonkeyPatch, fresh_parser: None
) -> None:
    monkeypatch.setenv("EXPC_NO_CACHE", "1")
    if damage == "another key":  # the grammar, the options or Lark changed
        monkeypatch.setattr(parse_tables, "KEY", "0" * 64)
    elif damage == "no key":
        monkeypatch.delattr(parse_tables, "KEY")
    elif damage == "corrupt":
        monkeypatch.setattr(parse_tables, "TABLES", base64.b64encode(b"\x80\x05junk").decode())
    elif damage == "truncated":
        monkeypatch.setattr(parse_tables, "TABLES", parse_tables.TABLES[:4000])
    elif damage == "not base64":
        monkeypatch.setattr(parse_tables, "TABLES", "a")
    else:
        monkeypatch.delattr(compiler, "parse_tables")
        monkeypatch.setitem(sys.modules, "expc.compiler.parse_tables", None)  # ImportError
    parser = P._parser()
    assert parser.source_path != "<deserialized>"  # made from the grammar's text
    text = SPECS[0].read_text()
    assert _dump(parser.parse(text)) == _dump(P.build_parser(P._grammar()).parse(text))
    assert P.parse(SourceFile("x.exp", "experiment x {}\n")).items[0].kind == "experiment"


def test_the_key_covers_the_grammar_and_lark_version(monkeypatch: pytest.MonkeyPatch) -> None:
    grammar = P._grammar()
    key = P.tables_key(grammar)
    assert P.tables_key(grammar.replace("remove", "delete")) != key
    monkeypatch.setattr(lark, "__version__", "0.0.1")
    assert P.tables_key(grammar) != key


@pytest.mark.parametrize("damage", ["corrupt", "stale"])
def test_a_bad_per_user_grammar_cache_is_rebuilt(
    damage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_parser: None
) -> None:
    """With the shipped tables stale (a grammar edit), the parser comes through Lark's cache
    file in the per-user cache: a corrupt one or one of another grammar is replaced."""
    monkeypatch.delenv("EXPC_NO_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(parse_tables, "KEY", "stale")
    folder = P.cache_dir()
    assert folder is not None and folder.is_relative_to(tmp_path)
    cache_file = folder / "grammar.lark-cache"
    if damage == "corrupt":
        cache_file.write_bytes(b"\x00garbage\n\x80\x05junk")
    else:
        lark.Lark('start: "x"', parser="lalr", cache=str(cache_file))  # another grammar's
    before = cache_file.read_bytes()
    text = SPECS[0].read_text()
    expected = _dump(P.build_parser(P._grammar()).parse(text))
    assert _dump(P._parser().parse(text)) == expected
    assert cache_file.read_bytes() != before  # rewritten for this grammar
    P._parser.cache_clear()
    reloaded = P._parser()
    assert reloaded.source_path == "<deserialized>"  # now read from the rebuilt file
    assert _dump(reloaded.parse(text)) == expected


def _make_read_only(path: Path) -> None:
    path.chmod(0o555)
    if os.access(path, os.W_OK) and os.geteuid() == 0:  # root writes through permissions
        if shutil.which("chattr") is None:
            pytest.skip("no way to make a folder read-only for root here")
        if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode:
            pytest.skip("chattr +i is not supported on this file system")


def _make_writable(path: Path) -> None:
    if os.geteuid() == 0 and shutil.which("chattr"):
        subprocess.run(["chattr", "-i", str(path)], capture_output=True)
    path.chmod(0o755)


def _compile(out: Path, env: dict[str, str]) -> dict[str, bytes]:
    spec = "specs/gated_attention.exp"
    result = subprocess.run(
        [sys.executable, "-m", "expc", "compile", spec, "-o", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*.py"))}


def test_a_read_only_cache_folder_is_not_used_and_compiling_works(tmp_path: Path) -> None:
    from expc import __version__

    base = {k: v for k, v in os.environ.items() if k not in ("EXPC_NO_CACHE", "XDG_CACHE_HOME")}
    expected = _compile(tmp_path / "uncached", {**base, "EXPC_NO_CACHE": "1"})
    folder = tmp_path / "cache" / "expc" / __version__
    folder.mkdir(parents=True)
    _make_read_only(folder)
    try:
        produced = _compile(tmp_path / "out", {**base, "XDG_CACHE_HOME": str(folder.parents[1])})
        assert produced == expected
        assert not any(folder.iterdir())
    finally:
        _make_writable(folder)


def test_a_cache_folder_that_is_a_file_is_not_used(tmp_path: Path) -> None:
    base = {k: v for k, v in os.environ.items() if k not in ("EXPC_NO_CACHE", "XDG_CACHE_HOME")}
    expected = _compile(tmp_path / "uncached", {**base, "EXPC_NO_CACHE": "1"})
    (tmp_path / "cache").write_text("not a folder")
    produced = _compile(tmp_path / "out", {**base, "XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert produced == expected


def test_a_file_read_by_several_specs_is_parsed_once() -> None:
    text = (ROOT / "specs" / "gated_attention.exp").read_text()
    source = SourceFile("specs/gated_attention.exp", text, ROOT / "specs" / "gated_attention.exp")
    same = SourceFile(source.name, text, source.path)
    assert P.parse(source) is P.parse(same)
    # Another file of the same name and text is another source: its own tree.
    elsewhere = SourceFile(source.name, text, Path("/elsewhere/gated_attention.exp"))
    assert P.parse(elsewhere) is not P.parse(source)
    assert P.parse(elsewhere).source.path == elsewhere.path
    assert P.parse(source, keep_comments=True).comments != ()
    assert P.parse(source).comments == ()


def test_compiling_imports_no_rich_when_there_is_nothing_to_report(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from expc.cli import app\n"
        "try:\n"
        f"    app(['compile', 'specs/gated_attention.exp', '-o', {str(tmp_path)!r}])\n"
        "except SystemExit as exit:\n"
        "    assert not exit.code, exit.code\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('rich', 'pygments'))\n"
        "assert not loaded, loaded\n"
    )
    env = {**os.environ, "EXPC_NO_CACHE": "1"}
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True)
    assert (tmp_path / "gated_attention" / "train.py").exists()
