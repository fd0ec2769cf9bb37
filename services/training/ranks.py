"""Data-parallel training on the GPUs of one node: which process this is, and what they agree on.

The worker runs once per GPU under torchrun, which sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``. Every rank trains on its share of each step's examples; their gradients are
summed (one all-reduce of the LoRA gradients, a few MB), so a step is the same step as on one
GPU and the checkpoints, the loss and a resume do not depend on the number of GPUs. Rank 0
alone writes: the job store (states, events), checkpoints, the best adapter, the final adapter.
Decisions that end the loop (a cancel request, early stopping) are rank 0's, broadcast to all,
so no rank is left waiting in a collective for one that stopped.

The LoRA gradients are summed by hand rather than through DistributedDataParallel: a rank whose
share of the last step is empty then simply contributes zeros, and gradient accumulation needs
no ``no_sync``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Ranks:
    """This process's place among the job's data-parallel processes (one process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    #: The device collectives run on: a CUDA device under NCCL, the CPU under gloo.
    device: str = "cpu"

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ, device: str = "cpu") -> Ranks:
        """The ranks torchrun set (none set: a single process)."""
        return cls(
            rank=int(env.get("RANK", "0")),
            world_size=int(env.get("WORLD_SIZE", "1")),
            local_rank=int(env.get("LOCAL_RANK", "0")),
            device=device,
        )

    @property
    def main(self) -> bool:
        """Rank 0: the only one that writes."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def shard(self, indices: Sequence[int]) -> list[int]:
        """This rank's share of a step's examples (every world_size-th, from its rank)."""
        return list(indices[self.rank :: self.world_size])

    def agree(self, flag: bool) -> bool:
        """Rank 0's ``flag`` on every rank."""
        if not self.distributed:
            return flag
        import torch
        import torch.distributed as dist

        value = torch.tensor([1 if flag else 0], device=self.device)
        dist.broadcast(value, src=0)
        return bool(value.item())

    def sum_gradients(self, params: Sequence[Any], *totals: float) -> list[float]:
        """Sum the parameters' gradients (None counts as zeros) and ``totals`` over the ranks."""
        if not self.distributed:
            return list(totals)
        import torch
        import torch.distributed as dist

        flat = torch.cat(
            [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).float() for p in params]
            + [torch.tensor(totals, dtype=torch.float32, device=params[0].device)]
        )
        dist.all_reduce(flat)
        offset = 0
        for p in params:
            count = p.numel()
            p.grad = flat[offset : offset + count].view_as(p).to(p.dtype)
            offset += count
        return [float(v) for v in flat[offset:].tolist()]


def start(ranks: Ranks) -> None:
    """Join the process group torchrun set up (NCCL on CUDA, gloo on the CPU)."""
    if not ranks.distributed:
        return
    import torch
    import torch.distributed as dist

    if ranks.device.startswith("cuda"):
        torch.cuda.set_device(ranks.local_rank)
    dist.init_process_group("nccl" if ranks.device.startswith("cuda") else "gloo")


def stop(ranks: Ranks) -> None:
    if ranks.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
