"""An expc-trained language model loaded from its run folder, ready to sample text.

A run folder `runs/<experiment>/<run>/` holds `checkpoint.pt` (the state dict under "model"
and the generated `Run` as a dict under "run"); the model class comes from the generated
package `generated/<experiment>/`. Any run of a `model transformer` spec loads: a
`next_token` LM (`data text`) or an `rlvr` policy (`data arithmetic`); both are byte-level
sequence models (vocabulary 256): text goes in as its UTF-8 bytes and comes out decoded,
invalid bytes replaced. Runs of other models (crl's residual MLPs, diffusion's U-Net) are
refused with a RunError. Sampling is `expc.runtime.sampling.generate`; this module only
prepares its inputs.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from expc.runtime.checkpoint import load_checkpoint
from expc.runtime.errors import RunError
from expc.runtime.loader import load_train_module, run_from_dict

BYTE_VOCAB = 256
# The context of a sequence model whose data section does not bound its sequences. The
# transformer template uses rotary positions, so nothing in the weights fixes a length;
# 256 bytes is the hivemind spec's default `model.max_context` (prompt plus answer).
DEFAULT_CONTEXT = 256
# What `expc serve` and the hivemind generators take, for the error that refuses the rest.
SEQUENCE_MODELS = "a run of a `model transformer` spec (objective next_token or rlvr)"


@dataclass(frozen=True)
class Completion:
    """One sampled continuation; `finish_reason` as in the OpenAI API ("stop"/"length")."""

    text: str
    finish_reason: str
    tokens: int


def resolve_checkpoint(path: Path | str) -> Path:
    """A run folder or a checkpoint file -> the checkpoint file."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise RunError(
            f"no checkpoint at {str(path)!r}; pass a run folder (runs/<experiment>/<run>) "
            "that holds checkpoint.pt, or the checkpoint file itself"
        )
    return path


def trained_context(train: ModuleType, run: Any) -> int:
    """The longest sequence (prompt plus continuation) the run's model was trained on.

    `data text` (next_token): every training window is `data.context` tokens. `data
    arithmetic` (rlvr): a sequence is a prompt (every prompt has the task's prompt_length)
    and then a worked solution (pretraining) or a GRPO rollout, both at most the task's
    max_completion_length, which is also what training's sampler allows; their sum bounds
    every sequence the policy saw. The task is built by the package's own `make_task`, as
    training built it. Any other data: DEFAULT_CONTEXT. An explicit `max_context` may ask
    for more than this: RoPE has no length limit, though past the trained length the model
    was never trained.
    """
    data = run.data
    if hasattr(data, "context"):
        return int(data.context)
    make_task = getattr(train, "make_task", None)
    task = make_task(data) if make_task is not None else None
    if hasattr(task, "prompt_length") and hasattr(task, "max_completion_length"):
        return int(task.prompt_length) + int(task.max_completion_length)
    return DEFAULT_CONTEXT


def chat_prompt(messages: Sequence[dict[str, str]]) -> str:
    """Chat messages as plain text for a base LM with no chat template.

    The contents, one paragraph each, then an empty line: the model continues with a new
    paragraph. Roles are dropped; expc's LMs were never trained on a role format.
    """
    return "".join(message["content"].strip() + "\n\n" for message in messages)


class LanguageModel:
    """A trained expc sequence model in eval mode (a next_token LM or an rlvr policy);
    `complete` samples `n` continuations of one prompt.

    `context` is the trained length (`trained_context`); `max_context`, prompt plus new
    bytes per request, defaults to it.
    """

    def __init__(
        self,
        checkpoint: Path | str,
        *,
        generated: Path | str = "generated",
        device: str = "cpu",
        max_context: int | None = None,
        name: str | None = None,
    ) -> None:
        self.checkpoint = resolve_checkpoint(checkpoint)
        # runs/<experiment>[@profile]/<run>/checkpoint.pt: the experiment folder's spec.json
        # (written by `expc run`) names the experiment and the code that trained it.
        run_dir = self.checkpoint.parent
        experiment, package = experiment_package(run_dir, Path(generated))
        if not (package / "model.py").is_file():
            raise RunError(
                f"no generated package {str(package)!r} for experiment {experiment!r}; run "
                f"`expc compile` for its spec, or pass --generated with the folder holding it"
            )
        state = load_checkpoint(self.checkpoint)
        if "run" not in state or "model" not in state:
            raise RunError(f"{self.checkpoint} is not an expc run checkpoint (no 'run'/'model')")
        train = load_train_module(package)
        model_module = importlib.import_module(f"{train.__package__}.model")
        if not isinstance(getattr(model_module, "Transformer", None), type):
            # Name what the run is: the first line of its model.py's docstring.
            lines = (model_module.__doc__ or "").strip().splitlines()
            what = lines[0].rstrip(".") if lines else f"no Transformer in {package}/model.py"
            raise RunError(
                f"{experiment}/{run_dir.name} is not a sequence model ({what}); "
                f"`expc serve` and hivemind generators take {SEQUENCE_MODELS}"
            )
        try:
            self.run = run_from_dict(train, state["run"])
        except (KeyError, TypeError) as error:
            raise RunError(
                f"{self.checkpoint}'s run does not fit {package}/train.py (was the spec "
                f"changed since training?): {error!r}"
            ) from None
        vocab = getattr(self.run.model, "vocab_size", None)
        if vocab not in (BYTE_VOCAB, BYTE_VOCAB + 1):
            raise RunError(f"only byte-level LMs (vocab 256) can be sampled; this one has {vocab}")
        # A `data.bos` model (vocab 257) read every window after its BOS token, id 256.
        self.bos = BYTE_VOCAB if vocab == BYTE_VOCAB + 1 else None
        self.device = torch.device(device)
        self.model = model_module.Transformer(self.run.model).to(self.device)
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as error:
            raise RunError(
                f"{self.checkpoint} does not fit {package}/model.py (was the spec changed "
                f"since training?): {str(error).splitlines()[0]}"
            ) from None
        self.model.eval()
        self.step = int(state.get("step", 0))
        self.context = trained_context(train, self.run)
        self.max_context = max_context or self.context
        self.name = name or f"{experiment}/{run_dir.name}"

    def complete(
        self,
        prompt: str,
        *,
        n: int = 1,
        max_tokens: int = 16,
        temperature: float = 1.0,
        top_p: float = 1.0,
        min_p: float = 0.0,
        stop: Sequence[str] = (),
        seed: int | None = None,
        batch_size: int = 64,
        cancelled: Callable[[], bool] | None = None,
    ) -> list[Completion]:
        """`n` continuations of `prompt`; the prompt keeps its last bytes that fit the context."""
        from expc.runtime.sampling import generate

        if max_tokens >= self.max_context:
            raise RunError(
                f"max_tokens must be < the context ({self.max_context} bytes), got {max_tokens}"
            )
        # The model reads at most max_context tokens: keep the end of the prompt, which
        # is what the continuation depends on most. An empty prompt starts at a newline.
        room = self.max_context - max_tokens - (self.bos is not None)
        data = prompt.encode("utf-8")[-room:] if room > 0 else b""
        first = [] if self.bos is None else [self.bos]
        ids = first + list(data or (b"" if first else b"\n"))
        tokens = torch.tensor(ids, dtype=torch.long, device=self.device)[None]
        generator = torch.Generator(device=self.device)
        generator.manual_seed(seed if seed is not None else int.from_bytes(os.urandom(8), "little"))
        completions: list[Completion] = []
        for start in range(0, n, batch_size):
            rows = min(batch_size, n - start)
            new = generate(
                self.model,
                tokens.expand(rows, -1),
                max_tokens,
                temperature=temperature,
                top_p=top_p,
                min_p=min_p,
                generator=generator,
                use_cache=hasattr(self.model, "new_cache"),
                cancelled=cancelled,
                vocab=BYTE_VOCAB,  # bytes only, never the BOS token
            )
            completions += [_decode(bytes(row), stop) for row in new.tolist()]
        return completions

    def chat_text(self, messages: Sequence[dict[str, str]]) -> str:
        """Chat messages as the text to continue: expc's LMs have no chat template."""
        return chat_prompt(messages)

    def count_tokens(self, text: str) -> int:
        return len(text.encode("utf-8"))  # byte-level: one token per byte

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "checkpoint": str(self.checkpoint),
            "step": self.step,
            "context": self.context,
            "max_context": self.max_context,
        }


def cut_at_stop(text: str, stop: Sequence[str]) -> str | None:
    """`text` up to the first of the stop strings it contains (OpenAI's `stop`); None when
    it contains none."""
    cuts = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return text[: min(cuts)] if cuts else None


def _decode(data: bytes, stop: Sequence[str]) -> Completion:
    text = data.decode("utf-8", errors="replace")
    kept = cut_at_stop(text, stop)
    if kept is not None:
        return Completion(kept, "stop", len(kept.encode("utf-8")))
    return Completion(text, "length", len(data))


def experiment_package(run_dir: Path, generated: Path) -> tuple[str, Path]:
    """(experiment name, generated package) of a run folder: the package `expc run` trained
    it with when that still exists, else `generated/<experiment>`."""
    info = run_dir.parent / "spec.json"
    experiment = run_dir.parent.name.split("@", 1)[0]
    try:
        recorded = json.loads(info.read_text(encoding="utf-8"))
        experiment = str(recorded.get("experiment", experiment))
        package = Path(recorded.get("package", ""))
        if recorded.get("package") and (package / "model.py").is_file():
            return experiment, package
    except (OSError, ValueError, AttributeError):
        pass
    return experiment, generated / experiment
