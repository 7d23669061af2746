"""Process groups from ``torchrun``'s environment (RANK, WORLD_SIZE, LOCAL_RANK): NCCL on GPUs, gloo on CPUs."""

from __future__ import annotations

import os

import torch

__all__ = ["init_from_env", "is_main_process", "local_rank"]


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
