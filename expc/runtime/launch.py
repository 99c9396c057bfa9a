"""Running generated experiments: overrides on the runs table, and the standalone CLI that
`python -m generated.<experiment>.train` gives (one run, no compiler involved)."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from expc.runtime.distributed import exit_process, joined
from expc.runtime.errors import RunError
from expc.runtime.progress import Progress, progress_bar
from expc.runtime.seeding import resolve_threads

TrainFn = Callable[..., dict[str, float]]


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Command-line text -> the field's type; values already typed pass through checked."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        choices = typing.get_args(annotation)
        if value not in choices:
            raise RunError(f"{key} must be one of {', '.join(map(repr, choices))}, got {value!r}")
        return value
    try:
        if annotation is bool:
            if isinstance(value, str):
                if value not in ("true", "false"):
                    raise ValueError(value)
                return value == "true"
            return bool(value)
        if annotation is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        return annotation(value) if annotation in (int, float, str) else value
    except ValueError:
        raise RunError(f"{key} must be {annotation.__name__}, got {value!r}") from None


def apply_overrides(run: Any, overrides: Mapping[str, Any]) -> Any:
    """`{"train.lr": 3e-3, "seed": 1}` -> a new frozen Run with those fields replaced."""
    for key, value in overrides.items():
        section, _, name = key.rpartition(".")
        target = getattr(run, section) if section else run
        hints = typing.get_type_hints(type(target))
        if name not in hints or not dataclasses.is_dataclass(target):
            fields = [f"{section}.{f}" if section else f for f in hints if f not in ("name",)]
            raise RunError(f"unknown override {key!r}; known: {', '.join(sorted(fields))}")
        updated = dataclasses.replace(target, **{name: _coerce(value, hints[name], key)})
        run = dataclasses.replace(run, **{section: updated}) if section else updated
    return run


def main(
    experiment: str,
    runs: Mapping[str, Any],
    profiles: Mapping[str, Mapping[str, Any]],
    train: TrainFn,
    argv: list[str] | None = None,
    total_steps: Callable[[Any], int] | None = None,
) -> None:
    """Standalone entry point of a generated train.py."""
    import typer

    def command(
        run: list[str] = typer.Option(None, "--run", help="Run name (repeatable); default: all."),
        out: Path = typer.Option(Path("runs"), "--out", help="Output folder."),
        profile: str = typer.Option(None, "--profile", help=f"One of: {', '.join(profiles)}."),
        smoke: bool = typer.Option(False, "--smoke", help="Same as --profile smoke."),
        set_: list[str] = typer.Option(None, "--set", help="Override, e.g. train.lr=3e-3."),
        device: str = typer.Option(None, "--device", help="cpu or cuda (default: the spec's)."),
        resume: bool = typer.Option(False, "--resume", help="Continue from the checkpoint."),
    ) -> None:
        overrides: dict[str, Any] = {}
        chosen = "smoke" if smoke else profile
        if chosen:
            if chosen not in profiles:
                raise typer.BadParameter(
                    f"unknown profile {chosen!r}; known: {', '.join(profiles)}"
                )
            overrides.update(profiles[chosen])
        for item in set_ or []:
            key, sep, value = item.partition("=")
            if not sep:
                raise typer.BadParameter(f"--set {item!r} is not of the form path=value")
            overrides[key.strip()] = value.strip()
        names = run or list(runs)
        for name in names:
            if name not in runs:
                raise typer.BadParameter(f"unknown run {name!r}; known: {', '.join(runs)}")
        try:
            for name in names:
                # Its threads resolved as `expc run` resolves them (0: the default), so
                # config.json records the count it trains with.
                config = resolve_threads(apply_overrides(runs[name], overrides))
                with progress_bar() as bar:
                    steps = total_steps(config) if total_steps else config.train.steps
                    task = Progress(bar, name, steps)
                    final = train(
                        config, out / experiment / name, task, device=device, resume=resume
                    )
                print(f"{name}: " + ", ".join(f"{k}={v:.4g}" for k, v in final.items()))
        except RunError as error:
            typer.secho(f"error: {error}", fg="red", err=True)
            raise typer.Exit(1) from None

    app = typer.Typer(add_completion=False)
    app.command()(command)
    try:
        app(args=argv, prog_name=f"python -m generated.{experiment}.train")
    except SystemExit as done:
        if not joined():
            raise
        # A torchrun rank (`strategy = ddp`): end without the interpreter's teardown.
        exit_process(done.code if isinstance(done.code, int) else int(done.code is not None))
