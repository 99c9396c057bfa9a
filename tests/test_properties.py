"""Property-based tests (hypothesis) for the parser, the formatter and the compiler."""

from __future__ import annotations

import ast
import keyword
import subprocess

from conftest import MINIMAL, ROOT, compile_text
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruff.__main__ import find_ruff_bin

from expc.compiler import CompileError
from expc.compiler.fmt import format_tree
from expc.compiler.parse import Value, escape, parse
from expc.compiler.plan import Plan
from expc.compiler.source import SourceFile, Span

names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True).filter(
    lambda s: s not in ("true", "false")
)
numbers = st.one_of(
    st.integers(-(10**12), 10**12).map(str),
    st.floats(allow_nan=False, allow_infinity=False, width=32)
    .map(repr)
    .filter(lambda s: "inf" not in s and "nan" not in s),
    st.sampled_from(["1e-3", "2.5E+4", ".5", "3.", "-0.0"]),
)
strings = st.text(max_size=12).map(escape)
scalars = st.one_of(numbers, strings, names, st.sampled_from(["true", "false"]))
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]"),
    max_leaves=8,
)
paths = st.lists(names, min_size=1, max_size=3).map(".".join)
comments = st.text(alphabet=st.characters(blacklist_characters="\n\r"), max_size=10).map(
    lambda s: "# " + s
)


@st.composite
def items(draw, depth: int = 0) -> str:
    choices = ["assign"] + (["block"] if depth < 3 else [])
    kind = draw(st.sampled_from(choices))
    gap = draw(st.sampled_from([" ", "\n", "\n\n", "  \n  "]))
    trailing = draw(st.one_of(st.just(""), comments.map(lambda c: " " + c + "\n")))
    if kind == "assign":
        return f"{draw(paths)}{draw(st.sampled_from(['=', ' = ']))}{draw(values)}{trailing}{gap}"
    label = draw(st.one_of(st.just(""), names.map(lambda n: " " + n)))
    body = "".join(draw(st.lists(items(depth + 1), max_size=3)))
    return f"{draw(names)}{label} {{{gap}{body}}}{trailing}{gap}"


specs = st.lists(items(), max_size=5).map("".join)


def shape(tree) -> object:
    """The meaning of a syntax tree without positions or spellings."""

    def node(item):
        if isinstance(item, Value):
            return (
                item.kind,
                tuple(node(v) for v in item.value) if item.kind == "list" else item.value,
            )
        if hasattr(item, "items"):
            return ("block", item.kind, item.label, tuple(node(i) for i in item.items))
        return ("assign", item.path, node(item.value))

    return tuple(node(i) for i in tree.items)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(specs)
def test_fmt_is_idempotent_and_preserves_meaning(text: str) -> None:
    tree = parse(SourceFile("p.exp", text), keep_comments=True)
    formatted = format_tree(tree)
    again = parse(SourceFile("p.exp", formatted), keep_comments=True)
    assert shape(again) == shape(tree)
    assert format_tree(again) == formatted
    assert sorted(c.text.rstrip() for c in again.comments) == sorted(
        c.text.rstrip() for c in tree.comments
    )


@settings(max_examples=100)
@given(st.text(max_size=30))
def test_strings_round_trip_through_escape(text: str) -> None:
    tree = parse(SourceFile("s.exp", f"x = {escape(text)}\n"))
    assert tree.items[0].value.value == text


# --- the compiler on valid specs generated from the IR's own ranges -----------------------


@st.composite
def valid_specs(draw) -> str:
    heads = draw(st.sampled_from([1, 2, 4]))
    head_dim = draw(st.sampled_from([2, 4, 8]))
    model = {
        "layers": draw(st.integers(1, 3)),
        "width": heads * head_dim,
        "heads": heads,
        "mlp_ratio": draw(st.integers(1, 4)),
        "norm": draw(st.sampled_from(["rmsnorm", "layernorm"])),
        "norm_layout": draw(st.sampled_from(["pre", "post", "sandwich"])),
        "rope_base": draw(st.sampled_from(["10000", "500.0", "1e6"])),
    }
    gates = draw(st.lists(st.sampled_from(["none", "headwise", "elementwise"]), max_size=3))
    description = escape(draw(st.text(max_size=40)))
    seed, steps = draw(st.integers(0, 99)), draw(st.integers(1, 50))
    lr = draw(st.sampled_from(["1e-3", "0.01"]))
    lines = [
        f"experiment prop {{ description = {description} seed = {seed} }}",
        f"data text {{ context = {draw(st.integers(2, 64))} val_fraction = 0.2 }}",
        "model transformer {",
        *(f"  {k} = {v}" for k, v in model.items()),
        f"  attention {{ gate = {draw(st.sampled_from(['none', 'headwise', 'elementwise']))} }}",
        "}",
        "objective next_token {}",
        f"train {{ steps = {steps} lr = {lr} }}",
    ]
    for index, gate in enumerate(gates):
        extra = draw(
            st.sampled_from(
                [
                    "",
                    " model.norm = rmsnorm",
                    " model.norm_layout = sandwich",
                    " model.attention.gate_position = value",
                    " model.attention.gate_activation = silu",
                ]
            )
        )
        lines.append(f"variant v{index} {{ model.attention.gate = {gate}{extra} }}")
    if draw(st.booleans()):
        lines.append("eval { context_multiples = [1, 2] attention_maps = true }")
    if draw(st.booleans()):
        lines.append("sweep depth { model.layers = [1, 2] }")
    return "\n".join(lines) + "\n"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_specs())
def test_valid_specs_compile_to_python_that_parses(text: str) -> None:
    compiled = compile_text(text)
    for name, code in compiled.files.items():
        tree = ast.parse(code, filename=name)
        # The description is free text: it may only ever appear inside string constants.
        for node in ast.walk(tree):
            if isinstance(node, ast.Name):
                assert node.id.isidentifier() and not keyword.iskeyword(node.id)
    assert len(compiled.spec.runs) >= 1


@settings(max_examples=40, deadline=None)
@given(valid_specs())
def test_generated_run_table_matches_the_ir(text: str) -> None:
    """Each RUNS entry, read back from the code's literals, equals the IR's resolved run."""
    compiled = compile_text(text)
    train = compiled.files["prop/train.py"]
    table = next(
        node.value
        for node in ast.parse(train).body
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "RUNS"
    )
    names = [ast.literal_eval(key) for key in table.keys]
    assert names == [run.name for run in compiled.spec.runs]
    plan = Plan(compiled.spec)
    for call, run in zip(table.values, compiled.spec.runs, strict=True):
        written: dict[str, dict[str, object]] = {}
        for keyword_arg in call.keywords:
            if isinstance(keyword_arg.value, ast.Call):  # model=ModelConfig(width=8, ...)
                written[keyword_arg.arg] = {
                    k.arg: ast.literal_eval(k.value) for k in keyword_arg.value.keywords
                }
            else:  # seed=3
                written.setdefault("run", {})[keyword_arg.arg] = ast.literal_eval(keyword_arg.value)
        assert written == plan.run_changes(run.config)


# --- mutated specs: an expc error with a location, never an internal exception -----------


@st.composite
def mutations(draw) -> str:
    text = MINIMAL + "variant g { model.attention.gate = elementwise }\n"
    position = draw(st.integers(0, len(text)))
    op = draw(st.sampled_from(["delete", "insert", "truncate", "duplicate", "replace"]))
    if op == "delete":
        end = min(len(text), position + draw(st.integers(1, 5)))
        return text[:position] + text[end:]
    if op == "insert":
        return text[:position] + draw(st.text(min_size=1, max_size=3)) + text[position:]
    if op == "truncate":
        return text[:position]
    if op == "duplicate":
        end = min(len(text), position + draw(st.integers(1, 12)))
        return text[:end] + text[position:end] + text[end:]
    return text[:position] + draw(st.characters()) + text[position + 1 :]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutations())
def test_mutated_specs_fail_cleanly(text: str) -> None:
    try:
        compile_text(text)
    except CompileError as error:
        assert error.diagnostics
        for diagnostic in error.diagnostics:
            assert isinstance(diagnostic.span, Span), diagnostic
            assert diagnostic.span.line >= 1 and diagnostic.span.column >= 1


@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(valid_specs(), min_size=4, max_size=4))
def test_valid_specs_generate_ruff_clean_code(tmp_path_factory, texts: list[str]) -> None:
    out = tmp_path_factory.mktemp("valid")
    for index, text in enumerate(texts):
        for name, code in compile_text(text).files.items():
            path = out / str(index) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(code)
    lint = subprocess.run(
        [find_ruff_bin(), "check", "--config", str(ROOT / "pyproject.toml"), str(out)],
        capture_output=True,
        text=True,
    )
    assert lint.returncode == 0, lint.stdout
