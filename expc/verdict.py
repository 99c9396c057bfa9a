"""What `expc run` does with a run folder that already exists: skip it, replace it, resume
it, or refuse. A committed result is never silently wrong: a finished run is skipped only
when its config is the same and its files verify, replaced only with --force (saying what
changes), and a checkpoint is resumed only under the config that took it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expc.compiler.lower import flatten
from expc.runtime import integrity


@dataclass(frozen=True)
class Verdict:
    skip: bool
    ok: bool = True  # a skip that is not a failure
    message: str = ""
    resume: bool | None = None  # None: as the command says


def verdict_of(
    run_dir: Path,
    config: dict,
    force: bool,
    replace_current: bool = True,
    resume: bool = False,
) -> Verdict:
    """Whether a run trains, given what its folder holds: a finished run with this config is
    skipped (with --force and `replace_current`, rerun); one with another config is
    replaced only with --force (saying what changes); an unfinished one starts again (or
    resumes)."""
    try:
        written = json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError):
        written = None
    finished = (run_dir / "summary.json").exists() and written is not None
    same = _same(written, json.loads(json.dumps(config)))
    if not finished:
        if not (resume and written is not None and (run_dir / "checkpoint.pt").exists()):
            return Verdict(skip=False)
        damage = _damaged_for_resume(run_dir)
        if damage and not force:
            return Verdict(
                True, False, f"cannot resume: {damage}; `--force` starts it again from step 0"
            )
        if damage:
            return Verdict(
                False, message=f"starting again from step 0 (--force): {damage}", resume=False
            )
        if same:
            return Verdict(skip=False)
        # Its checkpoint holds another config's weights and rows: continuing would log
        # them under this config.
        changes = _changes(written, json.loads(json.dumps(config)))
        if not force:
            return Verdict(
                True,
                False,
                f"cannot resume: its checkpoint was taken with another config ({changes}); "
                "`--force` starts it again from step 0",
            )
        return Verdict(
            False, message=f"starting again from step 0 (--force): {changes}", resume=False
        )
    damage = integrity.problem(run_dir) if same else None
    if damage:  # not a result: train it again, whatever --force says
        return Verdict(
            False,
            message=f"its files do not verify ({damage}): training it again from step 0",
            resume=False,
        )
    if same and not (force and replace_current):
        return Verdict(True, True, "finished earlier with this config, skipped (--force reruns)")
    if same:
        return Verdict(False, message="replacing the finished run (--force)")
    changes = _changes(written, json.loads(json.dumps(config)))
    if not force:
        return Verdict(
            True,
            False,
            f"finished earlier with another config ({changes}); `--force` replaces it",
        )
    return Verdict(False, message=f"replacing the finished run (--force): {changes}")


def _damaged_for_resume(run_dir: Path) -> str | None:
    """Why an unfinished run's rows cannot be continued: its metrics.jsonl is gone while a
    checkpoint is there, or a line before the last is corrupt (resuming would leave a hole)."""
    if not (run_dir / "metrics.jsonl").is_file():
        return "metrics.jsonl is missing while checkpoint.pt is there"
    line = integrity.corrupt_line(run_dir)
    return f"metrics.jsonl line {line} is corrupt" if line else None


def _same(written: Any, config: dict) -> bool:
    """Whether a run folder's config.json is this config's. A setting the folder records
    that this config no longer has (a field no generated code reads any more, so left out
    of the config) changes nothing the run computes, and is not a difference."""
    if not isinstance(written, dict):
        return False
    return not _differing(written, config)


def _differing(before: dict, after: dict) -> list[str]:
    flat_before, flat_after = flatten(before), flatten(after)
    return [k for k in flat_after if flat_before.get(k, _MISSING) != flat_after[k]]


_MISSING = object()


def _changes(before: dict, after: dict, limit: int = 3) -> str:
    flat_before, flat_after = flatten(before), flatten(after)
    keys = _differing(before, after)
    shown = [f"{k} {_short(flat_before.get(k))} -> {_short(flat_after.get(k))}" for k in keys]
    more = f" and {len(shown) - limit} more" if len(shown) > limit else ""
    return ", ".join(shown[:limit]) + more


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."
