"""Vectorized ensembles: K networks of one architecture trained in one process at once.

The members' parameters are stacked along a leading member dimension, and each member's
own module is rebound to its slice of the stack (its parameters are views of the stacked
storage). So the two halves of a training step work at their natural granularity:

- the forward and backward pass run once for all members, `torch.func.vmap` over
  `functional_call` with the stacked parameters (batched matmuls and convolutions);
- everything after the backward pass (the member's optimiser, gradient clipping, EMA,
  evaluation, checkpoint, `load_state_dict` on resume) works on the member's module as
  in a standalone run, and writes through to the stack.

When members stop (diverged, memorized, at their last step), the loop forms a new
ensemble of the others: the stopped ones cost nothing from then on.

A member is built exactly as its standalone run builds its network (same seed, same
init), so the two start from the same parameters; vmap changes only the order of float
operations, not what is computed.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, vmap

from expc.runtime.errors import RunError

# vmap runs SDPA's CPU flash kernel through its slow (per-member) fallback and warns once
# per call site; the result is the same, and the benchmark measures what it costs.
_FALLBACK_WARNING = r"There is a performance drop because we have not yet implemented"


class Ensemble:
    """`members`: modules of one architecture (their parameter names and shapes agree)."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        if not members:
            raise ValueError("an ensemble needs at least one member")
        shapes = [_shapes(member) for member in members]
        if any(s != shapes[0] for s in shapes[1:]):
            raise RunError(
                "ensemble members must share one architecture (parameter names and shapes)"
            )
        self.members = list(members)
        # The module vmap calls with the stacked tensors; its own tensors are never read.
        self.base = copy.deepcopy(members[0])
        self._call = _Call(self.base)
        self.params: dict[str, torch.Tensor] = {}
        self.buffers: dict[str, torch.Tensor] = {}
        for name, _ in members[0].named_parameters():
            stacked = torch.stack([_get(m, name).detach() for m in members])
            self.params[name] = stacked.requires_grad_()
        for name, _ in members[0].named_buffers():
            self.buffers[name] = torch.stack([_get(m, name) for m in members])
        for k, member in enumerate(members):
            _rebind(member, self.params, self.buffers, k)
        self._member_params = [dict(m.named_parameters()) for m in members]

    def release(self) -> None:
        """Give every member back parameters and buffers of its own (copies of its slice),
        before the stack is dropped: a member that leaves the ensemble keeps its values,
        and its checkpoint never carries the others'."""
        for member in self.members:
            for parameter in member.parameters():
                parameter.data = parameter.data.clone()
                parameter.grad = None
            for name, buffer in list(member.named_buffers()):
                owner, _, leaf = name.rpartition(".")
                module = member.get_submodule(owner) if owner else member
                module._buffers[leaf] = buffer.clone()

    def __len__(self) -> int:
        return len(self.members)

    def map(self, fn: Callable[..., Any], *inputs: Any) -> Any:
        """`fn(module, *member_inputs)` for every member at once. `module` is the member's
        network (the base module with the member's parameters: call it, or its
        submodules and methods); every tensor input has the member dimension first, and
        so does every tensor `fn` returns (a tensor, or a tuple or dict of them).
        Randomness inside `fn` is an error: draw it outside, from each member's own
        generator, as its standalone run does."""

        def one(params: dict, buffers: dict, *args: Any) -> Any:
            return functional_call(self._call, (params, buffers), (fn, *args))

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_FALLBACK_WARNING)
            return vmap(one, randomness="error")(
                self._prefixed(self.params), self._prefixed(self.buffers), *inputs
            )

    def losses(self, loss: Callable[..., torch.Tensor], *inputs: Any) -> torch.Tensor:
        """`map` for a loss: a [K] tensor, one loss per member."""
        return self.map(loss, *inputs)

    def backward(
        self, losses: torch.Tensor, active: Sequence[int] | None = None, only: str = ""
    ) -> None:
        """Backpropagate the losses of the `active` members (all by default) into the
        parameters whose names start with `only` (all by default; as
        `loss.backward(inputs=...)` in a step that updates part of a network), and hand
        each member its gradients (views of the stacked gradients), so that its optimiser
        steps as a standalone run's would. Each member's loss reaches only its own
        parameters, so a member's NaNs never reach another; inactive members and the
        other parameters get no gradient."""
        active = range(len(self)) if active is None else active
        names = [name for name in self.params if name.startswith(only)]
        for name in names:
            self.params[name].grad = None
            for member in self._member_params:
                member[name].grad = None
        if not active:
            return
        stacked = [self.params[name] for name in names]
        losses[list(active)].sum().backward(inputs=stacked)
        for k in active:
            for name in names:
                grad = self.params[name].grad
                self._member_params[k][name].grad = None if grad is None else grad[k]

    def _prefixed(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {f"module.{name}": tensor for name, tensor in tensors.items()}

    def bytes_per_member(self) -> int:
        """Parameter, buffer and gradient storage of one member."""
        tensors = [*self.params.values(), *self.buffers.values()]
        total = sum(t.numel() * t.element_size() for t in tensors)
        grads = sum(t.numel() * t.element_size() for t in self.params.values())
        return (total + grads) // len(self)


class _Call(nn.Module):
    """`fn(module, *args)` as a forward pass, so that `functional_call` can swap the
    parameters of `module` for one member's while `fn` calls any of its methods."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(self.module, *args)


def _shapes(module: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    tensors = [*module.named_parameters(), *module.named_buffers()]
    return [(name, tuple(t.shape)) for name, t in tensors]


def _get(module: nn.Module, name: str) -> torch.Tensor:
    owner, _, leaf = name.rpartition(".")
    return getattr(module.get_submodule(owner) if owner else module, leaf)


def _rebind(
    member: nn.Module, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor], k: int
) -> None:
    """Make member k's parameters and buffers views of slice k of the stacks. The
    Parameter objects stay the same (only their `.data` moves), so an optimiser or EMA
    built on the member before keeps working, tied weights stay tied, and an ensemble can
    be formed again from some of its members."""
    for name, parameter in member.named_parameters():
        parameter.data = params[name].detach()[k]
    for name, _ in list(member.named_buffers()):
        owner, _, leaf = name.rpartition(".")
        module = member.get_submodule(owner) if owner else member
        module._buffers[leaf] = buffers[name][k]


def ensemble_groups(
    configs: dict[str, dict[str, Any]], member_fields: Sequence[str], cap: int | None = None
) -> list[list[str]]:
    """The runs (name -> `asdict(Run)`) grouped into ensembles, in their order: runs join a
    group when their configs agree everywhere but in `member_fields` (dotted paths such as
    `seed`, `train.lr`, or a whole section `eval`); a group holds at most `cap` runs. A
    group of one is a run trained on its own."""
    groups: dict[str, list[list[str]]] = {}
    order: list[list[str]] = []
    for name, config in configs.items():
        key = repr(_structure(config, member_fields))
        chunks = groups.setdefault(key, [])
        if not chunks or (cap is not None and len(chunks[-1]) >= cap):
            chunks.append([])
            order.append(chunks[-1])
        chunks[-1].append(name)
    return order


def _structure(config: dict[str, Any], member_fields: Sequence[str]) -> dict[str, Any]:
    """The config without its name and the fields members may differ in."""
    shared = copy.deepcopy(config)
    shared.pop("name", None)
    for dotted in member_fields:
        *owners, leaf = dotted.split(".")
        section: Any = shared
        for owner in owners:
            section = section.get(owner, {}) if isinstance(section, dict) else {}
        if isinstance(section, dict):
            section.pop(leaf, None)
    return shared
