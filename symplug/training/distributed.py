"""Data-parallel fine-tuning (torch DistributedDataParallel, launched with ``torchrun``):
this process's place among the ranks, joining the process group, and the DDP wrapper."""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import SymplugError


@dataclass(frozen=True)
class World:
    """This process among the data-parallel processes (one process: rank 0 of 1);
    ``created``: this call initialised the process group (and destroys it)."""

    rank: int = 0
    size: int = 1
    created: bool = False

    def rows(self, n: int) -> tuple[int, int]:
        """[lo, hi) of this rank's items of a global batch of ``n``: contiguous pieces,
        the first ``n % size`` one longer (``np.array_split``)."""
        q, r = divmod(n, self.size)
        lo = self.rank * q + min(self.rank, r)
        return lo, lo + q + (self.rank < r)


def module_device(module: torch.nn.Module) -> torch.device:
    """The device of ``module``'s first parameter (CPU without parameters)."""
    param = next(module.parameters(), None)
    return torch.device("cpu") if param is None else param.device


def join_world(module: torch.nn.Module) -> World:
    """The default process group's rank and size; under ``torchrun`` (``WORLD_SIZE`` > 1 in
    the environment) without one, initialise it: nccl for a model on a GPU, else gloo."""
    if not dist.is_available():
        return World()
    if dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return World()
    device = module_device(module)
    backend = "nccl" if device.type == "cuda" and dist.is_nccl_available() else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    try:
        dist.init_process_group(backend)
    except (ValueError, RuntimeError) as exc:
        raise SymplugError(f"WORLD_SIZE={os.environ['WORLD_SIZE']} but the {backend} process "
                           f"group did not start ({exc}); launch with torchrun") from exc
    return World(dist.get_rank(), dist.get_world_size(), created=True)


def leave_world(world: World) -> None:
    """Destroy the process group if :func:`join_world` created it."""
    if world.created and dist.is_initialized():
        dist.destroy_process_group()


def data_parallel(step: torch.nn.Module, world: World) -> torch.nn.Module:
    """``step`` wrapped in DistributedDataParallel when there are several ranks, else as
    is. Buffers are not synchronised (they are not trained)."""
    if world.size <= 1:
        return step
    device = module_device(step)
    ddp = torch.nn.parallel.DistributedDataParallel
    no_buffer_sync = ({"forward_sync_buffers": False}  # newer torch
                      if "forward_sync_buffers" in inspect.signature(ddp).parameters
                      else {"broadcast_buffers": False})
    return ddp(step, device_ids=[device] if device.type == "cuda" else None, **no_buffer_sync)
