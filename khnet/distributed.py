"""Process groups from ``torchrun``'s environment (RANK, WORLD_SIZE, LOCAL_RANK): NCCL on GPUs, gloo on CPUs;
the gradient and BatchNorm-statistics averaging of a multi-process training step (``GradSync``)."""

from __future__ import annotations

import os

import torch
from torch import nn

__all__ = ["GradSync", "init_from_env", "is_main_process", "local_rank"]


def local_rank() -> int:
    """This process's GPU slot on its machine (0 without torchrun)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main_process() -> bool:
    """Whether this process reports and writes shared files: rank 0 of a torchrun job, or the only process."""
    return os.environ.get("RANK", "0") == "0"


def init_from_env(device: torch.device) -> tuple[int, int]:
    """Join the process group torchrun describes, once; returns (rank, world size), (0, 1) without torchrun."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size()


class GradSync:
    """Average gradients over ranks. A gradient that is None on every rank stays None (as with one process);
    one that exists somewhere is averaged with zeros from the ranks that did not compute it."""

    def __init__(self, world_size: int) -> None:
        self.world_size = world_size

    def __call__(self, model: nn.Module) -> None:
        import torch.distributed as dist

        params = list(model.parameters())
        present = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=params[0].device)
        dist.all_reduce(present)
        used = [p for p, flag in zip(params, present.tolist(), strict=True) if flag > 0]
        for p in used:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        if not used:
            return
        flat = torch.cat([p.grad.reshape(-1) for p in used])
        dist.all_reduce(flat)
        flat /= self.world_size
        offset = 0
        for p in used:
            n = p.numel()
            p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
            offset += n

    def buffers(self, model: nn.Module) -> None:
        """Average the BatchNorm running statistics over ranks (each rank ran other subnets) and take the
        largest batch counters, so every rank holds the same state after every step."""
        import torch.distributed as dist

        floats = [b for b in model.buffers() if b.is_floating_point()]
        counters = [b for b in model.buffers() if not b.is_floating_point()]
        if floats:
            flat = torch.cat([b.reshape(-1) for b in floats])
            dist.all_reduce(flat)
            flat /= self.world_size
            offset = 0
            for b in floats:
                b.copy_(flat[offset : offset + b.numel()].view_as(b))
                offset += b.numel()
        if counters:
            stacked = torch.stack([b.reshape(()) for b in counters])
            dist.all_reduce(stacked, op=dist.ReduceOp.MAX)
            for b, value in zip(counters, stacked, strict=True):
                b.fill_(value)
