"""Multi-GPU / multi-node runs through torch's own engine: torchrun + DistributedDataParallel.

`torchrun --nproc_per_node N -m blockbench run ...` starts N processes; each trains the same (variant, seed)
on its shard of every global batch, DDP averages the gradients, so the update equals the single-process update
on the whole batch. Evaluation windows are sharded and the loss summed across ranks. Only rank 0 writes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from blockbench.errors import BlockbenchError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = DistInfo()


def from_env() -> DistInfo:
    """The torchrun environment (RANK, WORLD_SIZE, LOCAL_RANK), or a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    return DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def init(info: DistInfo, device_type: str) -> None:
    if info.enabled and not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend=backend)


def local_batch_size(global_batch: int, info: DistInfo) -> int:
    if global_batch % info.world_size:
        raise BlockbenchError(f"world size {info.world_size} does not divide the global batch of {global_batch} "
                              "sequences; choose --nproc_per_node among its divisors")
    return global_batch // info.world_size


def shard(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """This rank's contiguous slice of a global batch (the batch is identical on every rank)."""
    if not info.enabled:
        return tensor
    size = len(tensor) // info.world_size
    return tensor[info.rank * size:(info.rank + 1) * size]


def all_reduce(tensor: torch.Tensor, info: DistInfo, op: str = "sum") -> torch.Tensor:
    if info.enabled:
        dist.all_reduce(tensor, op={"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}[op])
    return tensor


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
