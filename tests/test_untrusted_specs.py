"""Specs from strangers (issue 34): what a spec names is read only inside its project
root, only as a regular file, with a bound; a file that is not a spec is never echoed."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import MINIMAL
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_specs_build_on_specs import BASE, HIVEMIND

import expc.compiler.source as source_module
from expc.compiler import CompileError, compile_source
from expc.compiler.diagnostics import render_all
from expc.compiler.inputs import missing_inputs
from expc.compiler.pipeline import resolve
from expc.compiler.source import SourceFile
from expc.runtime import RunError, read_text_corpus
from expc.safe_read import Policy, Unreadable, find_root, read_bounded

SECRET = "AKIAFAKE0SECRET0KEY0wJalrXUtnFEMI"
ENV = f'AWS_SECRET_ACCESS_KEY = "{SECRET}"\nAWS_ACCESS_KEY_ID = "{SECRET}"\n'


def _project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "pyproject.toml").write_text("")
    return root


def _cli(*args: str, cwd: Path, timeout: float = 60) -> tuple[int, str, float]:
    env = {**os.environ, "XDG_CACHE_HOME": str(cwd / ".cache"), "NO_COLOR": "1"}
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "expc", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    return result.returncode, result.stdout + result.stderr, time.perf_counter() - started


def _compile_error(path: Path) -> str:
    source = SourceFile.read(path)
    with pytest.raises(CompileError) as caught:
        compile_source(source, format=False)
    sources = {**getattr(caught.value, "sources", {}), source.name: source}
    return str(render_all(caught.value.diagnostics, sources))


def _within(seconds: float, fn):  # noqa: ANN001, ANN202
    """fn()'s result, failing the test (not hanging it) if it takes longer."""
    box: list = []

    def call() -> None:
        try:
            box.append(("value", fn()))
        except BaseException as error:  # noqa: BLE001 - handed back to the test
            box.append(("error", error))

    thread = threading.Thread(target=call, daemon=True)
    started = time.perf_counter()
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    assert time.perf_counter() - started < seconds
    kind, value = box[0]
    if kind == "error":
        raise value
    return value


# --- no echo of what is not a spec -------------------------------------------------------


@pytest.mark.parametrize("name", [".env", "secrets.exp"])
def test_a_file_of_secrets_named_by_extends_never_reaches_the_output(
    tmp_path: Path, name: str
) -> None:
    root = _project(tmp_path)
    (root / "sub").mkdir()
    # `.env` is refused by its name; secrets.exp (a shell .env renamed) by its first line.
    text = ENV if name == ".env" else f"export AWS_SECRET_ACCESS_KEY={SECRET}\n" * 3
    (root / name).write_text(text)
    (root / "sub" / "spec.exp").write_text(f'extends "../{name}"\n' + MINIMAL)
    code, output, _ = _cli("compile", "sub/spec.exp", "-o", "out", cwd=root)
    assert code == 1
    assert SECRET not in output and "AWS_" not in output
    assert f'"../{name}" is not an .exp spec' in output
    assert "sub/spec.exp:1:9" in output and output.count("error:") == 1
    assert "Traceback" not in output


def test_a_spec_that_parses_like_a_dotenv_is_refused_by_its_name(tmp_path: Path) -> None:
    """`KEY = "value"` lines parse as assignments: only the name stops them being echoed."""
    root = _project(tmp_path)
    (root / ".env").write_text(ENV)
    (root / "spec.exp").write_text('extends ".env"\n' + MINIMAL)
    text = _compile_error(root / "spec.exp")
    assert SECRET not in text and "unknown field" not in text
    assert '".env" is not an .exp spec' in text


def test_a_file_outside_the_root_allowed_by_allow_path_is_never_quoted(tmp_path: Path) -> None:
    root = _project(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "base.exp").write_text(BASE.replace("heads = 2", f"heads = {SECRET}"))
    (root / "spec.exp").write_text(f'extends "{elsewhere}/base.exp"\n')
    code, output, _ = _cli(
        "compile", "spec.exp", "-o", "out", "--allow-path", str(elsewhere), cwd=root
    )
    assert code == 1 and "Traceback" not in output
    # The error is located there; the line itself (a code frame) is not shown.
    assert "base.exp:9:11" in output
    assert f"heads = {SECRET}" not in output and "9 |" not in output


# --- only regular files, with a bound ------------------------------------------------------


def test_dev_zero_and_a_fifo_named_by_extends_are_located_errors_in_under_two_seconds(
    tmp_path: Path,
) -> None:
    root = _project(tmp_path)
    (root / "zero.exp").symlink_to("/dev/zero")
    os.mkfifo(root / "pipe.exp")
    for target, reason in [("zero.exp", "outside the project root"), ("pipe.exp", "named pipe")]:
        (root / "spec.exp").write_text(f'extends "{target}"\n' + MINIMAL)
        text = _within(2, lambda: _compile_error(root / "spec.exp"))
        assert reason in text and "spec.exp:1:9" in text
        code, output, _ = _cli("compile", "spec.exp", "-o", "out", cwd=root, timeout=30)
        assert code == 1 and reason in output and "Traceback" not in output


def test_dev_zero_allowed_by_allow_path_is_still_not_read(tmp_path: Path) -> None:
    root = _project(tmp_path)
    (root / "zero.exp").symlink_to("/dev/zero")
    (root / "spec.exp").write_text('extends "zero.exp"\n' + MINIMAL)
    code, output, elapsed = _cli(
        "compile", "spec.exp", "-o", "out", "--allow-path", "/dev", cwd=root, timeout=30
    )
    assert code == 1 and "spec.exp:1:9" in output and "Traceback" not in output


def test_the_bounded_reader_refuses_devices_pipes_sockets_and_large_files(tmp_path: Path) -> None:
    import socket

    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(Unreadable, match="named pipe"):
        _within(2, lambda: read_bounded(tmp_path / "pipe", 100))
    with pytest.raises(Unreadable, match="character device"):
        _within(2, lambda: read_bounded("/dev/zero", 100))
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(tmp_path / "sock"))
        with pytest.raises(OSError):
            _within(2, lambda: read_bounded(tmp_path / "sock", 100))
    (tmp_path / "big").write_bytes(b"x" * 101)
    with pytest.raises(Unreadable, match="101 bytes; the limit is 100"):
        read_bounded(tmp_path / "big", 100)
    assert read_bounded(tmp_path / "big", 101) == b"x" * 101


def test_a_corpus_that_is_dev_zero_or_a_fifo_is_a_clear_run_error(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.txt")
    for corpus, reason in [("/dev/zero", "character device"), (tmp_path / "pipe.txt", "pipe")]:
        with pytest.raises(RunError, match=reason):
            _within(2, lambda corpus=corpus: read_text_corpus(str(corpus)))


def test_a_corpus_read_through_the_bounded_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import expc.runtime.data as data

    (tmp_path / "book.txt").write_bytes(b"a" * 2000)
    monkeypatch.setattr(data, "MAX_CORPUS_BYTES", 1500)
    with pytest.raises(RunError, match="the limit is 1,500"):
        read_text_corpus(str(tmp_path / "book.txt"))


# --- the project root -----------------------------------------------------------------------


def test_the_root_is_the_nearest_pyproject_or_git_else_the_specs_folder(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    assert find_root(tmp_path / "a" / "b" / "s.exp") == (tmp_path / "a" / "b").resolve()
    (tmp_path / "a" / ".git").mkdir()
    assert find_root(tmp_path / "a" / "b" / "s.exp") == (tmp_path / "a").resolve()


@pytest.mark.parametrize("written", ["/etc/passwd.exp", "../outside/base.exp"])
def test_absolute_and_dotdot_paths_outside_the_root_are_refused(
    tmp_path: Path, written: str
) -> None:
    root = _project(tmp_path)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "base.exp").write_text(BASE)
    (root / "spec.exp").write_text(f'extends "{written}"\n')
    text = _compile_error(root / "spec.exp")
    assert f'"{written}" is outside the project root {root.resolve().as_posix()}' in text
    assert "--allow-path" in text and "spec.exp:1:9" in text


def test_allow_path_and_root_widen_what_a_spec_may_read(tmp_path: Path) -> None:
    root = _project(tmp_path)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "base.exp").write_text(BASE)
    (root / "spec.exp").write_text('extends "../outside/base.exp"\n')
    code, output, _ = _cli("compile", "spec.exp", "-o", "out", cwd=root)
    assert code == 1 and "outside the project root" in output
    outside = str(tmp_path / "outside")
    code, output, _ = _cli("compile", "spec.exp", "-o", "out", "--allow-path", outside, cwd=root)
    assert code == 0, output
    code, output, _ = _cli("compile", "spec.exp", "-o", "out2", "--root", str(tmp_path), cwd=root)
    assert code == 0, output
    # The compile cache does not carry an allowance over to a command without it.
    code, output, _ = _cli("compile", "spec.exp", "-o", "out3", cwd=root)
    assert code == 1 and "outside the project root" in output


def test_a_run_reference_outside_the_root_is_refused(tmp_path: Path) -> None:
    root = _project(tmp_path)
    (tmp_path / "lm.exp").write_text(BASE)
    (root / "hm.exp").write_text(
        HIVEMIND.replace("CHECKPOINTS", 'run("../lm", "vanilla-layers_1")')
    )
    with pytest.raises(CompileError) as caught:
        resolve(SourceFile.read(root / "hm.exp"))
    (diagnostic,) = caught.value.diagnostics
    assert diagnostic.message.startswith('"../lm" is outside the project root')
    (root / "hm.exp").write_text(HIVEMIND.replace("CHECKPOINTS", 'run("../.env", "x")'))
    (root / ".env").write_text(ENV)
    with pytest.raises(CompileError) as caught:
        resolve(SourceFile.read(root / "hm.exp"))
    assert caught.value.diagnostics[0].message == '"../.env" is outside the project root ' + (
        f"{root.resolve().as_posix()}"
    )


def test_an_input_file_outside_the_root_is_refused_before_a_run(tmp_path: Path) -> None:
    root = _project(tmp_path)
    (tmp_path / "book.txt").write_text("text " * 300)
    (root / "book.txt").write_text("text " * 300)
    text = MINIMAL.replace("context = 16", "context = 16 corpus = CORPUS")
    policy = Policy(root.resolve())
    for corpus, refused in [
        ('"../book.txt"', True),
        ('"/etc/hostname"', True),
        ('"book.txt"', False),
    ]:
        spec, _ = resolve(SourceFile("spec.exp", text.replace("CORPUS", corpus)))
        found = missing_inputs(spec, root, policy)
        assert bool(found) == refused, found
        if refused:
            assert "outside the project root" in found[0].message
            assert "data.corpus" in found[0].message and found[0].span is not None
    spec, _ = resolve(SourceFile("spec.exp", text.replace("CORPUS", '"pydoc_data.topics"')))
    assert missing_inputs(spec, root, policy) == []


# --- any path in extends: inside the root, or refused, never read ---------------------------

PARTS = ["..", ".", "a.exp", "sub", "link.exp", "outside", "b.exp", "c.txt", "nope.exp", ""]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    absolute=st.booleans(),
    parts=st.lists(st.sampled_from(PARTS), min_size=1, max_size=5),
)
def test_any_extends_path_resolves_inside_the_root_or_is_refused_never_read(
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    absolute: bool,
    parts: list[str],
) -> None:
    base = _fixture_tree(tmp_path_factory)
    root = (base / "project").resolve()
    opened: list[Path] = []
    real = source_module.read_bounded

    def recording(path, limit, what="file"):  # noqa: ANN001, ANN202
        opened.append(Path(path))
        return real(path, limit, what)

    monkeypatch.setattr(source_module, "read_bounded", recording)
    written = ("/" + str(base).strip("/") + "/" if absolute else "") + "/".join(parts)
    spec = root / "sub" / "spec.exp"
    source = SourceFile("spec.exp", f'extends "{written}"\n' + MINIMAL, spec)
    try:
        resolve(source)
        refused = None
    except CompileError as error:
        refused = error.diagnostics[0].message
    for path in opened:
        assert path.resolve().is_relative_to(root), (written, path)
    try:
        target = (spec.parent / written).resolve()
    except (OSError, ValueError):
        return
    if not target.is_relative_to(root):
        assert refused is not None and "outside the project root" in refused


def _fixture_tree(factory: pytest.TempPathFactory) -> Path:
    """project/{pyproject.toml, a.exp, c.txt, sub/spec.exp, link.exp -> ../outside/b.exp}
    beside outside/b.exp: made once per session."""
    base = factory.getbasetemp() / "untrusted_tree"
    if (base / "done").exists():
        return base
    project = base / "project"
    (project / "sub").mkdir(parents=True, exist_ok=True)
    (base / "outside").mkdir(exist_ok=True)
    (project / "pyproject.toml").write_text("")
    (project / "a.exp").write_text(MINIMAL)
    (project / "sub" / "a.exp").write_text(MINIMAL)
    (project / "c.txt").write_text(ENV)
    (base / "outside" / "b.exp").write_text(MINIMAL)
    (base / "b.exp").write_text(MINIMAL)
    link = project / "link.exp"
    if not link.is_symlink():
        link.symlink_to(base / "outside" / "b.exp")
    (project / "sub" / "link.exp").unlink(missing_ok=True)
    (project / "sub" / "link.exp").symlink_to(base / "outside" / "b.exp")
    (base / "done").write_text("")
    return base


# --- the run-time readers of the other files a spec names ----------------------------------


def test_prompt_image_and_gguf_files_are_read_with_a_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np

    import expc.runtime.diffusion.data as diffusion_data
    import expc.runtime.hivemind.prompts as prompts
    import expc.runtime.pretrained.model as pretrained

    (tmp_path / "p.jsonl").write_text('{"prompt": "hello"}\n' * 10)
    (tmp_path / "p.csv").write_text("prompt\nhello\r\nworld\r\n")
    assert [p.text for p in prompts.load_prompts(tmp_path / "p.csv")] == ["hello", "world"]
    assert len(prompts.load_prompts(tmp_path / "p.jsonl")) == 10
    monkeypatch.setattr(prompts, "MAX_PROMPT_FILE_BYTES", 50)
    with pytest.raises(RunError, match="the limit is 50"):
        prompts.load_prompts(tmp_path / "p.jsonl")

    np.save(tmp_path / "x.npy", np.zeros((2, 4, 4), dtype=np.uint8))
    assert tuple(diffusion_data.load_images(tmp_path / "x.npy").shape) == (2, 1, 4, 4)
    monkeypatch.setattr(diffusion_data, "MAX_NPY_BYTES", 100)
    with pytest.raises(RunError, match="the limit is 100"):
        diffusion_data.load_images(tmp_path / "x.npy")

    (tmp_path / "m.gguf").write_bytes(b"GGUF" + b"\0" * 100)
    monkeypatch.setattr(pretrained, "MAX_GGUF_BYTES", 10)
    with pytest.raises(RunError, match="GGUF file is 104 bytes; the limit is 10"):
        pretrained.PretrainedSource.resolve(str(tmp_path / "m.gguf"))


def test_expc_run_refuses_a_corpus_that_is_a_fifo_or_dev_zero_before_training(
    tmp_path: Path,
) -> None:
    root = _project(tmp_path)
    os.mkfifo(root / "pipe.txt")
    text = MINIMAL.replace("context = 16", "context = 16 corpus = CORPUS") + "target cpu {}\n"
    for corpus, reason in [("pipe.txt", "not a file: pipe.txt"), ("/dev/zero", "outside")]:
        (root / "s.exp").write_text(text.replace("CORPUS", f'"{corpus}"'))
        code, output, _ = _cli("run", "s.exp", "--out", "runs", cwd=root, timeout=120)
        assert code == 1 and reason in output and "(data.corpus)" in output, output
        assert "s.exp:2:" in output and "Traceback" not in output
        assert not (root / "runs/tiny/main/metrics.jsonl").exists()


def test_a_run_reference_to_a_file_that_is_not_a_spec_is_refused_unread(tmp_path: Path) -> None:
    root = _project(tmp_path)
    (root / "lm.txt").write_text(ENV)
    (root / "hm.exp").write_text(HIVEMIND.replace("CHECKPOINTS", 'run("lm.txt", "main")'))
    text = _compile_error(root / "hm.exp")
    assert '"lm.txt" is not an .exp spec' in text and SECRET not in text


def test_a_checkpoint_that_is_a_fifo_or_a_device_is_a_clear_run_error(tmp_path: Path) -> None:
    from expc.runtime import load_checkpoint

    os.mkfifo(tmp_path / "checkpoint.pt")
    for path, reason in [(tmp_path / "checkpoint.pt", "named pipe"), ("/dev/zero", "device")]:
        with pytest.raises(RunError, match=f"cannot read checkpoint .*{reason}"):
            _within(2, lambda path=path: load_checkpoint(Path(path)))
