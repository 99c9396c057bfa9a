"""The analyses a next-token experiment's report adds to the generic tables and curves:
learning-rate stability (a spec with an lr sweep) and longer contexts (a spec with
`eval.context_multiples`). Each gives no lines where its spec has nothing to analyse."""

from __future__ import annotations

from pathlib import Path

from expc.runtime import context_extension, lr_stability


def analyse(experiment_dir: Path) -> list[str]:
    return [*lr_stability.analyse(experiment_dir), *context_extension.analyse(experiment_dir)]
