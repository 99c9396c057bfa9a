"""Editor support: the Pygments lexer, the TextMate grammar, the pre-commit hooks."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, SPECS
from pygments.lexers import get_lexer_by_name, get_lexer_for_filename
from pygments.token import Error, Keyword, Name, Number, String, Token

from expc.lexer import ExpLexer

GRAMMAR = ROOT / "editors" / "vscode" / "syntaxes" / "expc.tmLanguage.json"
VALID = [*SPECS, *sorted((ROOT / "tests" / "golden" / "codegen").glob("*/spec.exp"))]


def test_lexer_is_registered_with_pygments() -> None:
    assert isinstance(get_lexer_by_name("expc"), ExpLexer)
    assert isinstance(get_lexer_for_filename("specs/x.exp"), ExpLexer)


@pytest.mark.parametrize("spec", VALID, ids=[p.parent.name + "/" + p.stem for p in VALID])
def test_lexer_reads_every_spec_without_error_tokens(spec: Path) -> None:
    tokens = list(ExpLexer().get_tokens(spec.read_text()))
    assert not [value for kind, value in tokens if kind in Error]
    assert "".join(value for _, value in tokens) == spec.read_text()


def test_lexer_token_kinds() -> None:
    text = (
        'model transformer {\n  norm = rmsnorm # why\n  lr = 1e-3\n  x.y = "a\\"b"\n'
        "  ok = true\n}\n"
    )
    kinds = {value: kind for kind, value in ExpLexer().get_tokens(text) if value.strip()}
    assert kinds["model"] in Keyword and kinds["transformer"] in Name.Class
    assert kinds["norm"] in Name.Attribute and kinds["x.y"] in Name.Attribute
    assert kinds["rmsnorm"] in Name.Constant and kinds["1e-3"] in Number
    assert kinds["# why"] in Token.Comment and kinds['\\"'] in String.Escape
    assert kinds["true"] in Keyword.Constant


def test_lexer_knows_extends_remove_and_references() -> None:
    text = 'extends "base.exp"\nremove train.warmup\nm { c = [run("a", "b")] }\n'
    tokens = list(ExpLexer().get_tokens(text))
    assert not [value for kind, value in tokens if kind in Error]
    kinds = {value: kind for kind, value in tokens if value.strip()}
    assert kinds["extends"] in Keyword.Namespace and kinds["remove"] in Keyword.Namespace
    assert kinds["run"] in Name.Function and kinds["train.warmup"] not in Error


def test_textmate_grammar_is_valid_and_matches_the_language() -> None:
    grammar = json.loads(GRAMMAR.read_text())
    assert grammar["scopeName"] == "source.expc"
    rules = grammar["repository"]
    for rule in rules.values():
        for key in ("match", "begin", "end"):
            if key in rule:
                re.compile(rule[key])  # the patterns stay within what Python and Oniguruma share
    block = re.compile(rules["block"]["match"])
    match = block.search("model transformer {")
    assert match and match.group(1) == "model" and match.group(2) == "transformer"
    assignment = re.compile(rules["assignment"]["match"])
    assert assignment.search("  model.attention.gate = none").group(1) == "model.attention.gate"
    assert re.fullmatch(rules["number"]["match"], "-2.5E+4")
    manifest = json.loads((GRAMMAR.parent.parent / "package.json").read_text())
    assert manifest["contributes"]["grammars"][0]["scopeName"] == "source.expc"


def test_pre_commit_files_are_valid() -> None:
    for command, path in (
        ("validate-manifest", ".pre-commit-hooks.yaml"),
        ("validate-config", ".pre-commit-config.yaml"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "pre_commit", command, path],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stdout + result.stderr
