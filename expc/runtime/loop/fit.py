"""The training loop, written once: the order of a run, for every objective.

    restore or start fresh (checkpoint) -> for each step of each stage:
        enter the stage (its data, a later stage's optimiser), set the step's lr
        step (the objective's)                       -- alone, or stacked in an ensemble
        watch: a non-finite loss stops the run; a loss far above the stage's start is
               marked `blown_up` in its row
        every evaluation: the running means, the objective's metrics, one row (rank 0)
        checkpoint on its cadence, the progress bar, a barrier under DDP
    close: the objective's last measurements, summary.json

A single run (`fit`) and an ensemble (`fit_ensemble`) share everything but the step:
`RunLoop.finish` is the one step tail both call.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from expc.runtime.checkpoint import load_checkpoint, restore_rng, save_checkpoint
from expc.runtime.ensemble import Ensemble
from expc.runtime.errors import RunError
from expc.runtime.loop.running import Running
from expc.runtime.loop.training import Stats, Training
from expc.runtime.metrics import MetricsLogger
from expc.runtime.progress import Progress


class RunLoop:
    """One run's side of the loop: its checkpoint, clocks, running statistics, watch,
    metrics log and progress; `prepare` and `finish` wrap each of its steps."""

    def __init__(
        self, training: Training, out_dir: Path, progress: Progress | None, resume: bool
    ) -> None:
        self.training = training
        self.world = training.world
        self.main = self.world is None or self.world.is_main
        self.out_dir = Path(out_dir)
        self.checkpoint_path = self.out_dir / "checkpoint.pt"
        self.progress = progress
        stages = training.stages
        self.starts = [sum(s.steps for s in stages[:i]) for i in range(len(stages))]
        self.total = sum(s.steps for s in stages)
        self.running = Running()
        self.window: list[float] = []  # step losses since the last evaluation
        self.start_loss: dict[int, float] = {}  # each stage's first loss: the watch's base
        self.first_step, self.stopped, self.diverged = 0, False, False
        elapsed = cpu = 0.0
        state = None
        if resume and self.checkpoint_path.exists():
            state = load_checkpoint(self.checkpoint_path)
            try:
                training.load_state_dict(state)
                restore_rng(state["rng"])
                self.first_step, self.stopped = state["step"], state["stopped"]
                elapsed, cpu = state["elapsed_s"], state["cpu_s"]
                self.running.load_state_dict(state["running"])
                self.window, self.start_loss = state["window"], state["start_loss"]
                if training.spikes is not None:
                    training.spikes.load_state_dict(state["spikes"])
            except (KeyError, RuntimeError, ValueError, TypeError) as error:
                # Another run's checkpoint, or one an older expc wrote: not this run's state.
                raise RunError(
                    f"{self.checkpoint_path} does not fit this run ({type(error).__name__}: "
                    f"{str(error)[:120]}): train it again without --resume"
                ) from None
            # Inside a stage (or at the end): its data and state, as when it began.
            training.enter_stage(self.stage_at(self.first_step - 1)[0], fresh=False)
        self.logger: MetricsLogger | None = None
        self.row: dict[str, Any] = {}
        if self.main:  # rank 0 logs and checkpoints
            self.logger = MetricsLogger(
                self.out_dir,
                config=asdict(training.run),
                resume_from=self.first_step if state is not None else None,
                tensorboard=training.tensorboard,
            )
            self.row = self.logger.rows[-1] if self.logger.rows else {}
        self.started = time.perf_counter() - elapsed
        self.cpu_started = time.process_time() - cpu
        if progress is not None:
            progress.advance(steps=self.first_step)

    def stage_at(self, step: int) -> tuple[int, int]:
        """The stage that 0-based `step` belongs to, and that stage's first step."""
        index = max(0, bisect.bisect_right(self.starts, step) - 1)
        return index, self.starts[index]

    def trains_at(self, step: int) -> bool:
        return not self.stopped and self.first_step <= step < self.total

    def prepare(self, step: int) -> float | None:
        """Before `step`: enter its stage when it is the stage's first, and set its lr."""
        index, start = self.stage_at(step)
        if step == start:
            self.training.enter_stage(index, fresh=True)
        schedule = self.training.stages[index].lr
        if schedule is None:
            return None
        lr = schedule(step - start)
        for group in self.training.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def finish(self, step: int, lr: float | None, value: float, stats: Stats) -> None:
        """After `step`'s update: the watch, the evaluation, the checkpoint, progress."""
        training, done = self.training, step + 1
        index, start = self.stage_at(step)
        stage = training.stages[index]
        self.running.add(stats)
        if training.spikes is not None:
            training.spikes.update(value)
        if math.isfinite(value):
            self.start_loss.setdefault(index, value)
        self.window.append(value)
        head: dict[str, Any] = {"step": done}
        if len(training.stages) > 1:
            head["stage"] = index + 1
        head.update(training.counters(done))
        if lr is not None:
            head["lr"] = lr
        if not math.isfinite(value):  # diverged: record it and stop, NaNs teach nothing
            numbers = {k: float(v) for k, v in stats.items()}
            self._log({**head, **numbers, **self._spikes(), "diverged": 1})
            self.stopped = self.diverged = True
            return
        evaluated = stage.evaluates(done - start)
        stage_ends = done == start + stage.steps
        stop = False
        if evaluated:
            means = self.running.means(self.world)  # a collective under DDP: every rank
            self.diverged = not all(math.isfinite(v) for v in means.values())
            if self.main:
                measured = training.evaluate(done)
                row = {**head, **self._clocks(), **means, **measured, **self._spikes()}
                if self._blown_up(stage.blowup, index):
                    row["blown_up"] = 1
                if self.diverged:
                    row["diverged"] = 1
                self._log(row)
                stop = training.should_stop(row)
            if self.world is not None:
                stop = self.world.agree(stop)
            if self.diverged:
                self.stopped = True
                return
            self.running.clear()
            self.window = []
        if stage_ends:
            training.end_stage(index)
        every = training.run.train.checkpoint_every
        due = (every and done % every == 0) or (not every and evaluated) or stage_ends
        if (due or stop) and self.main:
            self._save(done, stop)
        if self.progress is not None:
            self.progress.advance(loss=value)
        if self.world is not None and (due or evaluated or stop):
            self.world.barrier()  # no rank runs ahead of rank 0's evaluation or checkpoint
        self.stopped = stop or done == self.total

    def close(self) -> dict[str, Any]:
        """The objective's last measurements and summary.json (rank 0); the process group."""
        summary = self.row
        if self.logger is not None:
            summary = self.training.close(self.row, self.diverged)
            self.logger.close(summary=summary)
        if self.world is not None:
            self.world.close()
        return summary

    def _log(self, row: dict[str, Any]) -> None:
        """Log the row's metrics (the spec's, and the loop's own keys the objective lists);
        the last row logged is the run's summary."""
        self.row = {key: row[key] for key in self.training.metrics if key in row}
        if self.logger is not None:
            self.logger.log(self.row)

    def _clocks(self) -> dict[str, float]:
        """Wall and CPU seconds so far, evaluations included (in an ensemble, the whole
        ensemble's: the members' steps are one computation)."""
        return {
            "elapsed_s": time.perf_counter() - self.started,
            "cpu_s": time.process_time() - self.cpu_started,
        }

    def _spikes(self) -> dict[str, int]:
        spikes = self.training.spikes
        return {} if spikes is None else {"loss_spikes": spikes.count}

    def _blown_up(self, factor: float, index: int) -> bool:
        """Whether the mean step loss since the last evaluation is far above the stage's
        first loss: a run that is diverging without (yet) producing a NaN."""
        if not factor or index not in self.start_loss or not self.window:
            return False
        return sum(self.window) / len(self.window) > factor * abs(self.start_loss[index])

    def _save(self, done: int, stop: bool) -> None:
        spikes = self.training.spikes
        save_checkpoint(
            self.checkpoint_path,
            step=done,
            run=asdict(self.training.run),
            **self.training.state_dict(),
            running=self.running.state_dict(),
            window=self.window,
            start_loss=self.start_loss,
            stopped=stop,
            spikes=spikes.state_dict() if spikes is not None else None,
            **self._clocks(),
        )


def fit(
    training: Training,
    out_dir: Path,
    progress: Progress | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Train one run to its end (or to its divergence or early stop); return its summary."""
    loop = RunLoop(training, out_dir, progress, resume)
    step = loop.first_step
    while loop.trains_at(step):
        lr = loop.prepare(step)
        value, stats = training.step(step)
        loop.finish(step, lr, value, stats)
        step += 1
    return loop.close()


def fit_ensemble(
    trainings: Sequence[Training],
    out_dirs: Sequence[Path],
    progress: Sequence[Progress | None] | None = None,
    resume: Sequence[bool] | None = None,
) -> list[dict[str, Any] | RunError]:
    """Train runs of one architecture and batch shape as one vectorized ensemble: every
    step, each live member's own lr and draws, one stacked step for all, then each
    member's own tail (watch, evaluation, checkpoint) as `fit` runs it. A member that
    diverges or stops leaves the stack; the others go on. Returns each run's summary, or
    the RunError that kept a member from starting (a checkpoint it could not resume from):
    that member alone is left out."""
    progress = progress or [None] * len(trainings)
    resume = resume or [False] * len(trainings)
    loops: list[RunLoop] = []
    refused: dict[int, RunError] = {}  # members that could not start: the others go on
    for k, member in enumerate(zip(trainings, out_dirs, progress, resume, strict=True)):
        try:
            loops.append(RunLoop(*member))
        except RunError as error:  # a corrupt checkpoint, say: this member's fault alone
            refused[k] = error
    if not loops:
        return [refused[k] for k in range(len(trainings))]
    ensemble: Ensemble | None = None
    live: list[int] = []
    step = min(loop.first_step for loop in loops)
    while True:
        training = [k for k, loop in enumerate(loops) if loop.trains_at(step)]
        if not training:  # the next member to resume later than this step, if any
            later = [
                loop.first_step
                for loop in loops
                if loop.trains_at(loop.first_step) and loop.first_step > step
            ]
            if not later:
                break
            step = min(later)
            continue
        if training != live:  # members stopped (or resumed later ones joined): stack anew
            if ensemble is not None:
                ensemble.release()
            live = training
            ensemble = Ensemble([loops[k].training.model for k in live])
        assert ensemble is not None
        rates = [loops[k].prepare(step) for k in live]
        members = [loops[k].training for k in live]
        results = type(members[0]).ensemble_step(ensemble, members, step)
        for k, lr, (value, stats) in zip(live, rates, results, strict=True):
            loops[k].finish(step, lr, value, stats)
        step += 1
    if ensemble is not None:
        ensemble.release()
    summaries = iter([loop.close() for loop in loops])
    return [refused[k] if k in refused else next(summaries) for k in range(len(trainings))]
