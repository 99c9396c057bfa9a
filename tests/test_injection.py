"""No spec text can become code: adversarial strings compile into inert literals.

Method: compile the same spec twice, once with a harmless string and once with an
adversarial one, and compare the generated modules' syntax trees with every string
constant blanked out. If any payload had escaped its literal (closed a quote, ended a
docstring, started a statement, a call or a name), the trees would differ.
"""

from __future__ import annotations

import ast
import re

import pytest
from conftest import MINIMAL
from hypothesis import given, settings
from hypothesis import strategies as st

from expc.compiler.parse import escape
from expc.compiler.pipeline import compile_source, resolve
from expc.compiler.source import SourceFile

PAYLOADS = [
    '"',
    '"""',
    "'''",
    "\\",
    '\\"""',
    '"); __import__("os").system("echo pwned"); ("',
    '\n__import__("os").system("echo pwned")\n',
    '"""\nimport os\nos.system("echo pwned")\n"""',
    "{{ 7 * 7 }}",
    "{% for x in range(3) %}loop{% endfor %}",
    "{# comment #}",
    "\x00\x01\x1b[31m",
    "\u2028\u2029\r\nprint(1)",
    "# not a comment\nx = 1",
    "${HOME} $(whoami) `id`",
]


def skeleton(code: str) -> str:
    """The syntax tree of the code with every string constant replaced by ''."""
    tree = ast.parse(code)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            node.value = ""
    return ast.dump(tree)


def spec_with(text: str) -> str:
    literal = escape(text)
    return (
        MINIMAL.replace(
            "experiment tiny {}", f"experiment tiny {{ description = {literal} }}"
        ).replace("data text { context = 16 }", f"data text {{ context = 16 corpus = {literal} }}")
        + f"variant a {{ data.corpus = {literal} }}\n"
        + f"sweep s {{ data.corpus = [{literal}, {escape(text + '2')}] }}\n"
        + f"profile p {{ data.corpus = {literal} }}\n"
    )


BASELINE = {
    name: skeleton(code)
    for name, code in compile_source(SourceFile("t.exp", spec_with("SAFE"))).files.items()
}


@pytest.mark.parametrize("payload", PAYLOADS, ids=range(len(PAYLOADS)))
def test_payload_stays_inside_string_literals(payload: str) -> None:
    files = compile_source(SourceFile("t.exp", spec_with(payload))).files
    assert {name: skeleton(code) for name, code in files.items()} == BASELINE


@settings(max_examples=60, deadline=None)
@given(st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=40))
def test_any_text_stays_inside_string_literals(payload: str) -> None:
    files = compile_source(SourceFile("t.exp", spec_with(payload))).files
    assert {name: skeleton(code) for name, code in files.items()} == BASELINE


def test_spec_file_name_cannot_inject_code() -> None:
    name = 'evil\nimport os\nos.system("pwned")\n.exp'
    files = compile_source(SourceFile(name, spec_with("SAFE"))).files
    assert {n: skeleton(code) for n, code in files.items()} == BASELINE
    assert all("\nimport os" not in code for code in files.values())


def test_corpus_reaches_code_as_the_exact_string() -> None:
    payload = '"""\nimport os\n'
    files = compile_source(SourceFile("t.exp", spec_with(payload))).files
    tree = ast.parse(files["tiny/train.py"])
    constants = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)}
    assert payload in constants


@pytest.mark.parametrize("value", ["../../etc", "/abs/path", "..", ".", "a/b\\c", "x" * 300])
def test_run_names_are_safe_directory_names(value: str) -> None:
    spec, _ = resolve(
        SourceFile("t.exp", MINIMAL + f"sweep s {{ data.corpus = [{escape(value)}] }}\n")
    )
    for run in spec.runs:
        assert re.fullmatch(r"[A-Za-z0-9_.+-]+", run.name), run.name
        assert run.name not in (".", "..") and "/" not in run.name and len(run.name) <= 128
