"""Progress reporting: generated loops call `advance`; the CLI decides how it looks."""

from __future__ import annotations

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress


class Progress:
    """One task on a rich progress bar, showing the latest loss."""

    def __init__(self, bar: RichProgress, description: str, total: int):
        self._bar = bar
        self._task = bar.add_task(description, total=total, loss=float("nan"))

    def advance(self, loss: float | None = None, steps: int = 1) -> None:
        fields = {} if loss is None else {"loss": loss}
        self._bar.update(self._task, advance=steps, **fields)


def progress_bar(transient: bool = False) -> RichProgress:
    return RichProgress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.3f}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        transient=transient,
    )
