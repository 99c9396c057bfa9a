"""torch.distributed for generated code: the process group torchrun describes, batch
sharding, and the few collectives a data-parallel training loop needs."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist

from expc.runtime.errors import RunError


@dataclass(frozen=True)
class World:
    rank: int
    size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, evaluates and writes checkpoints."""
        return self.rank == 0

    def shard(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous slice of a global batch (dim 0)."""
        per_rank = batch.size(0) // self.size
        return batch[self.rank * per_rank : (self.rank + 1) * per_rank]

    def shard_list(self, items: list) -> list:
        """This rank's contiguous slice of a global list (prompts, problems)."""
        per_rank = len(items) // self.size
        return items[self.rank * per_rank : (self.rank + 1) * per_rank]

    def seed(self, seed: int) -> int:
        """A seed of this rank's own random stream: `seed` itself on rank 0 (so a 1-rank
        run draws what a single-process run draws), a distinct one on every other rank."""
        return seed if self.rank == 0 else (seed * 1_000_003 + self.rank) % 2**63

    def mean(self, value: torch.Tensor) -> float:
        """The average of a scalar over all ranks (e.g. the global training loss)."""
        value = value.detach().clone().float()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        return value.item() / self.size

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every rank's `tensor` concatenated along dim 0, in rank order, with gradients
        flowing back to each rank's own part (torch.distributed.nn's autograd all_gather)."""
        from torch.distributed.nn.functional import all_gather

        return torch.cat(all_gather(tensor), dim=0)

    def average_gradients(self, parameters: Iterable[torch.Tensor]) -> None:
        """Replace each parameter's gradient by its mean over the ranks (what DDP does in
        backward, for steps that backpropagate into a subset of the parameters). The
        gradients travel as one flat buffer: one collective, not one per tensor."""
        grads = [p.grad for p in parameters if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= self.size
        offset = 0
        for grad in grads:
            grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
            offset += grad.numel()

    def agree(self, flag: bool) -> bool:
        """Rank 0's decision (to stop, say), on every rank."""
        value = torch.tensor([1.0 if flag else 0.0])
        dist.broadcast(value, src=0)
        return bool(value.item())

    def barrier(self) -> None:
        dist.barrier()

    def close(self) -> None:
        # Every rank at the end first: a rank tearing gloo down while another still sends
        # (rank 0 writing the last checkpoint) can abort ("terminate called without an
        # active exception"), failing a run that trained to its end.
        dist.barrier()
        dist.destroy_process_group()


# Set once this process has joined a process group (see `exit_process`).
_joined = False


def joined() -> bool:
    """Whether this process joined a process group (and so ends through `exit_process`)."""
    return _joined


def exit_process(code: int) -> None:
    """End a torchrun rank's process with `code`, skipping the interpreter's teardown once
    it joined a process group: gloo's threads can outlive `destroy_process_group` and abort
    the process in C++ static destruction ("terminate called without an active exception",
    no Python frame on the stack) after the run wrote everything, which fails a finished
    run. Every file is closed by then; stdout and stderr are flushed here. A process that
    never joined a group exits normally."""
    if not _joined:
        sys.exit(code)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def init_distributed(device_type: str) -> World:
    """Join the process group torchrun set up (gloo on CPU, nccl on CUDA)."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise RunError(
            "this spec uses `strategy = ddp`, which runs under torchrun: use `expc run`, or "
            "`torchrun --nproc-per-node N -m generated.<experiment>.train`"
        )
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    global _joined
    _joined = True
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
    return World(dist.get_rank(), dist.get_world_size(), local_rank)
