"""Multi-process training with ``torchrun``: process group, devices, and keeping every rank's model identical.

gloo on the CPU, nccl on GPUs. Rank 0 logs and writes files; every rank trains on its own shard
(``DistributedSampler``) and DDP all-reduces the gradients.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ..errors import ConfigError

__all__ = ["Distributed", "resolve_device", "setup_distributed", "sync_buffers"]


@dataclass(frozen=True)
class Distributed:
    """Where this process stands: its rank, the number of processes and the device it trains on."""

    rank: int
    world: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module the training step calls: DDP around ``model`` when there are several processes."""
        if self.world == 1:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else the CPU; an explicit CUDA device must exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available")
    return device


def setup_distributed(device: str) -> Distributed:
    """Initialise the process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1) and pick this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    resolved = resolve_device(device)
    if world > 1 and resolved.type == "cuda":
        resolved = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return Distributed(rank, world, resolved)


def sync_buffers(model: nn.Module, world: int, *, average_bn: bool) -> None:
    """Give every rank the same buffers: average the BN statistics each rank re-estimated on its own shard
    (``average_bn``), and take rank 0's other buffers (what DDP's next forward would do), so that all ranks evaluate
    and rank 0 saves one model."""
    averaged = set()
    if average_bn:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                for buffer in (m.running_mean, m.running_var):
                    dist.all_reduce(buffer)
                    buffer.div_(world)
                    averaged.add(id(buffer))
    for buffer in model.buffers():
        if id(buffer) not in averaged:
            dist.broadcast(buffer, src=0)
