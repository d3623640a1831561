"""``torchrun`` support: process group set-up from the environment, rank helpers and small collectives.

``torchrun --nproc_per_node=N -m nsfw_lab train ...`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``;
we initialise NCCL on CUDA and Gloo on the CPU. Without those variables everything is single-process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """True under torchrun with more than one process."""
        return self.world_size > 1

    @property
    def main(self) -> bool:
        """Only the main process writes files and shows progress."""
        return self.rank == 0


def from_env() -> Dist:
    """Read torchrun's variables (defaults: one process)."""
    return Dist(
        int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))
    )


def init(d: Dist, device: torch.device) -> None:
    """Join the process group (NCCL on CUDA, Gloo on CPU) when there is more than one process."""
    if d.enabled and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        cuda = device.type == "cuda"
        dist.init_process_group("nccl" if cuda else "gloo", device_id=device if cuda else None)


def shutdown() -> None:
    """Leave the process group, if any."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_sum(t: torch.Tensor, d: Dist) -> torch.Tensor:
    """Sum a tensor over all processes (identity in a single process)."""
    if d.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def gather_objects(obj: Any, d: Dist) -> list[Any]:
    """Every process's ``obj``, in rank order."""
    if not d.enabled:
        return [obj]
    out: list[Any] = [None] * d.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, d: Dist) -> Any:
    """Rank 0's ``obj`` on every process."""
    if not d.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(d: Dist) -> None:
    """Wait for all processes."""
    if d.enabled:
        dist.barrier()
