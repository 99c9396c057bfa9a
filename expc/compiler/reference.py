"""`run("spec", "name")`: a reference to a run of another experiment, checked when compiling.

The referenced spec is found relative to the file that writes the reference (`.exp` may be
left out), compiled to its IR (with its own extends and references, so a cycle of
references is caught), and checked: the run exists and what it trains fits the field (a
sequence model for `model.checkpoints`). The value becomes the run's folder under the
default runs folder, `runs/<experiment>/<run>`: what generated code uses when it runs on
its own; `expc run` points the field at the folder of the profile it runs (runner.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from expc.compiler import components, ir
from expc.compiler.components.base import NETWORK_TEXT
from expc.compiler.diagnostics import CompileError, Diagnostic, did_you_mean
from expc.compiler.parse import Call
from expc.compiler.paths import display_name
from expc.compiler.source import SourceFile, Span
from expc.safe_read import policy_for

DEFAULT_RUNS = "runs"
SIGNATURE = '`run("spec", "name")`'


@dataclass
class Upstream:
    """A referenced spec, compiled: its IR and every file its compilation read."""

    source: SourceFile
    spec: ir.Spec
    files: dict[str, SourceFile]


# (source, stack of spec paths being resolved) -> Upstream; raises CompileError.
Compile = Callable[[SourceFile, tuple[Path, ...]], Upstream]


@dataclass
class Resolver:
    """Resolves the references of one spec; `read` collects every upstream file read."""

    compile: Compile
    stack: tuple[Path, ...]  # the specs whose references are being resolved (cycles)
    local: dict[str, SourceFile] = field(default_factory=dict)  # the spec and its layers
    read: dict[str, SourceFile] = field(default_factory=dict)  # every upstream file read
    _cache: dict[Path, Upstream | list[Diagnostic]] = field(default_factory=dict)

    def __call__(
        self, call: Call, span: Span, holding: str, at: tuple[str | int, ...]
    ) -> tuple[str, ir.Reference] | list[Diagnostic]:
        if call.name != "run":
            return [
                Diagnostic(
                    f"unknown function `{call.name}`",
                    call.name_span,
                    did_you_mean(call.name, ["run"]) or f"the one function is {SIGNATURE}",
                )
            ]
        strings = [a for a in call.args if a.kind == "string"]
        if len(call.args) != 2 or len(strings) != 2:
            return [
                Diagnostic(
                    "`run(...)` takes two strings: a spec and one of its runs",
                    span,
                    f'write {SIGNATURE}, e.g. `run("gated_attention", "vanilla")`',
                )
            ]
        spec_arg, run_arg = strings
        upstream = self._upstream(spec_arg.value, spec_arg.span, span)  # type: ignore[arg-type]
        if isinstance(upstream, list):
            return upstream
        run_name: str = run_arg.value  # type: ignore[assignment]
        runs = {run.name: run for run in upstream.spec.runs}
        if run_name not in runs:
            return [
                Diagnostic(
                    f"{upstream.source.name} has no run `{run_name}`",
                    run_arg.span,
                    did_you_mean(run_name, runs)
                    or "its runs: " + ", ".join(f"`{name}`" for name in runs),
                )
            ]
        objective = components.for_config(runs[run_name].config).objective
        if not objective.trains or objective.needs != holding:
            what = NETWORK_TEXT.get(objective.needs, objective.needs)
            trains = f"trains {what}" if objective.trains else "trains nothing"
            return [
                Diagnostic(
                    f"run `{run_name}` of {upstream.source.name} (`objective {objective.kind}`) "
                    f"{trains}; this field needs {NETWORK_TEXT.get(holding, holding)}",
                    span,
                    "refer to a run of an experiment whose objective trains one "
                    f"({', '.join(_objectives_training(holding))})",
                )
            ]
        experiment = upstream.spec.config.experiment.name
        reference = ir.Reference(
            spec=upstream.source.name,
            path=str(upstream.source.path),
            experiment=experiment,
            run=run_name,
            field=at,
            model=runs[run_name].config.model.model_dump(),
            span=span,
        )
        return f"{DEFAULT_RUNS}/{experiment}/{run_name}", reference

    def _upstream(self, written: str, at: Span, call_span: Span) -> Upstream | list[Diagnostic]:
        here = Path(at.file)
        folder = self._folder_of(here)
        try:
            path = (folder / written).resolve()
        except (OSError, ValueError):  # a NUL byte, a name too long for the OS
            return [Diagnostic("not a usable file path", at)]
        if not path.suffix:
            path = path.with_suffix(".exp")
        if path in self._cache:
            return self._cache[path]
        policy = policy_for(self.stack[0] if self.stack else None)
        if not policy.permits(path):
            message, help = policy.refusal(f'"{written}"', folder / written)
            return [Diagnostic(message, at, help)]
        if path.suffix != ".exp":
            return [
                Diagnostic(
                    f'"{written}" is not an .exp spec',
                    at,
                    "its name does not end in .exp; `run(...)` refers to another spec",
                )
            ]
        if path in self.stack:
            names = [p.name for p in self.stack[self.stack.index(path) :]]
            result: Upstream | list[Diagnostic] = [
                Diagnostic(
                    "`run(...)` reference cycle: " + " -> ".join([*names, path.name]),
                    call_span,
                    "an experiment cannot read runs that (through others) read its own",
                )
            ]
        elif not path.is_file():
            result = [
                Diagnostic(
                    f'no spec "{written}" (looked for {display_name(path)})',
                    at,
                    "the spec is found relative to the folder of the file that refers to it",
                )
            ]
        else:
            try:
                source = SourceFile.read(path, echo=policy.inside_root(path))
                result = self.compile(source, (*self.stack, path))
                self.read.update(result.files)
            except CompileError as error:
                count = len([d for d in error.diagnostics if d.severity == "error"])
                result = [
                    Diagnostic(
                        f"{written} does not compile ({count} error{'s' if count != 1 else ''})",
                        at,
                        f"run `expc check {path}` to see them",
                        notes=tuple(
                            f"{d.span or written}: {d.message}" for d in error.diagnostics[:3]
                        ),
                    )
                ]
            except (OSError, UnicodeDecodeError) as error:
                result = [Diagnostic(f"cannot read {path}: {error}", at)]
        self._cache[path] = result
        return result

    def _folder_of(self, shown: Path) -> Path:
        """The folder of the file a diagnostic name stands for (relative names are relative
        to the working directory; see paths.display_name)."""
        for source in [*self.local.values(), *self.read.values()]:
            if source.name == shown.as_posix() and source.path is not None:
                return source.path.resolve().parent
        return (Path.cwd() / shown).resolve().parent


def _objectives_training(holding: str) -> list[str]:
    return [
        f"`objective {o.kind}`"
        for o in components.all_objectives().values()
        if o.trains and o.needs == holding
    ]
