"""What an objective fills in: the hooks of one run's training (`Training`), and the
precision of its steps (`Precision`). The loop (`expc.runtime.loop.fit`) owns the order of
a run; a Training never sees whether it runs alone, in an ensemble or under DDP, except
that it shards a global batch when it is handed a `world`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch

from expc.runtime.distributed import World
from expc.runtime.ensemble import Ensemble
from expc.runtime.loop.stages import Stage
from expc.runtime.stability import SpikeCounter

Stats = dict[str, float | torch.Tensor]


class Precision:
    """A run's precision: bf16/fp16 autocast around forward passes (matmuls in low
    precision, reductions in fp32), or none for fp32; fp16 gradients go through a scaler."""

    def __init__(self, name: str, device: torch.device) -> None:
        self.name = name
        self.device = device
        self.scaler = torch.amp.GradScaler(device.type) if name == "fp16" else None

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.name == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.name == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def backward(self, loss: torch.Tensor, inputs: Sequence[torch.Tensor] | None = None) -> None:
        scaled = self.scaler.scale(loss) if self.scaler is not None else loss
        scaled.backward(inputs=inputs)

    def step(
        self,
        optimizer: torch.optim.Optimizer,
        parameters: Iterable[torch.Tensor],
        clip: float,
        update: bool = True,
    ) -> None:
        """Clip the true gradients (`clip` 0: no clipping), then step; with a scaler the
        gradients are unscaled first, the step is skipped on inf/NaN, and with `update`
        the scale adapts (a step of several optimisers updates it once, after the last)."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(parameters, clip)
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)
        if update:
            self.scaler.update()

    def update(self) -> None:
        """Adapt the scale once after a step of several optimisers (`step(update=False)`)."""
        if self.scaler is not None:
            self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler is not None:
            self.scaler.load_state_dict(state)


class Training:
    """One run's training, as its objective builds it (network, optimiser, data, random
    streams: in the subclass's `__init__`). The loop calls the hooks below; the defaults
    are those of an objective with one network, one optimiser and one loss.

    A subclass with that shape fills `draw` (the step's random inputs, from the run's own
    generators) and `loss` (a pure function of the network and those inputs), so the same
    two hooks serve a run alone and a run in a vectorized ensemble. Others override `step`
    and, for ensembles, `ensemble_step`."""

    metrics: ClassVar[tuple[str, ...]]  # the keys a metrics row keeps
    tensorboard: ClassVar[bool] = False

    run: Any
    stages: list[Stage]
    model: torch.nn.Module  # what a checkpoint holds as `model`
    optimizer: torch.optim.Optimizer  # the one a stage's `lr` drives
    precision: Precision
    clip: float = 0.0
    world: World | None = None
    spikes: SpikeCounter | None = None  # counts loss spikes when the spec asks

    def __init__(
        self, run: Any, out_dir: Path, target: torch.device, world: World | None = None
    ) -> None:
        """The run's config, its folder, its device and (under DDP) its process group; a
        subclass builds the rest after this."""
        self.run, self.out_dir, self.target, self.world = run, Path(out_dir), target, world

    @property
    def trained(self) -> torch.nn.Module:
        """The module training steps call: the network, or its DDP/compiled wrapper."""
        return self.model

    # --- stages ---------------------------------------------------------------------
    def enter_stage(self, index: int, fresh: bool) -> None:
        """Stage `index` begins (`fresh`), or a run resumed inside it: its data, and for a
        fresh later stage its own optimiser."""

    def end_stage(self, index: int) -> None:
        """After the last step of stage `index` is logged, before its checkpoint."""

    # --- a step ---------------------------------------------------------------------
    def draw(self, step: int) -> tuple[torch.Tensor, ...]:
        """The random inputs of 0-based `step`, from this run's generators."""
        raise TypeError(f"{type(self).__name__} draws nothing: it overrides step()")

    def loss(self, model: torch.nn.Module, *inputs: torch.Tensor) -> torch.Tensor:
        """The training loss of `model` on the drawn inputs; it draws nothing itself."""
        raise TypeError(f"{type(self).__name__} has no loss(): it overrides step()")

    def shard(self, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """Under DDP, this rank's rows of the global batch."""
        if self.world is None:
            return inputs
        return tuple(self.world.shard(tensor) for tensor in inputs)

    def step(self, step: int) -> tuple[float, Stats]:
        """Gradient step `step` (0-based, over all stages); returns its loss (watched for
        divergence and shown on the progress bar) and the statistics the rows average."""
        inputs = self.shard(self.draw(step))
        with self.precision.autocast():
            loss = self.loss(self.trained, *inputs)
        self.optimizer.zero_grad(set_to_none=True)
        self.precision.backward(loss)
        self.apply_gradients()
        value = self.world.mean(loss) if self.world is not None else loss.item()
        return value, {"train_loss": value}

    def apply_gradients(self) -> None:
        """With the gradients in: clip, step, and whatever follows a step (an EMA)."""
        self.precision.step(self.optimizer, self.model.parameters(), self.clip)

    @classmethod
    def ensemble_step(
        cls, ensemble: Ensemble, members: Sequence[Training], step: int
    ) -> list[tuple[float, Stats]]:
        """One step of every member at once: each member's own draws, one vectorized
        forward and backward pass, then each member's own `apply_gradients`."""
        draws = [member.draw(step) for member in members]
        inputs = [torch.stack(parts) for parts in zip(*draws, strict=True)]
        losses = ensemble.losses(members[0].loss, *inputs)
        ensemble.backward(losses)
        for member in members:
            member.apply_gradients()
        return [(value, {"train_loss": value}) for value in losses.detach().tolist()]

    # --- rows and evaluation ------------------------------------------------------
    def counters(self, done: int) -> dict[str, float]:
        """How far the run has come after `done` steps, beside the step (tokens, epochs)."""
        return {}

    def evaluate(self, done: int) -> dict[str, float]:
        """This objective's metrics after `done` steps (rank 0 only under DDP)."""
        return {}

    def should_stop(self, row: dict[str, float]) -> bool:
        """Whether the run has learnt what it is for and may end early (rank 0 decides)."""
        return False

    def close(self, row: dict[str, float], diverged: bool) -> dict[str, float]:
        """After the last step (rank 0): anything measured once at the end; returns the
        run's summary."""
        return row

    # --- checkpoints --------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint holds of this objective (besides the loop's own state)."""
        state: dict[str, Any] = {"model": self.model, "optimizer": self.optimizer}
        if self.precision.scaler is not None:
            state["scaler"] = self.precision
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.precision.scaler is not None:
            self.precision.load_state_dict(state["scaler"])
