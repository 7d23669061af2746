"""Where work runs: device names as users write them, checked before any work starts."""

from __future__ import annotations

import torch

from khnet.errors import KhnetError, UsageError

__all__ = ["resolve_device"]


def resolve_device(name: str | torch.device, local_rank: int = 0) -> torch.device:
    """``auto`` (CUDA when present, else the CPU), ``cpu``, ``cuda`` (GPU ``local_rank``) or ``cuda:N``.

    Raises:
        UsageError: a name that is no device (``tpu``, ``gpu0``).
        KhnetError: a CUDA device on a machine without CUDA or without that GPU.
    """
    text = str(name).strip().lower()
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    if text == "cuda":
        text = f"cuda:{local_rank}"
    if text != "cpu" and not (text.startswith("cuda:") and text[5:].isdigit()):
        raise UsageError(f"device {str(name)!r} is not one khnet runs on; use auto, cpu, cuda or cuda:N")
    if text.startswith("cuda"):
        if not torch.cuda.is_available():
            raise KhnetError(f"device {str(name)!r} requested but CUDA is not available here; use --device cpu")
        if int(text[5:]) >= torch.cuda.device_count():
            raise KhnetError(f"device {str(name)!r}: this machine has {torch.cuda.device_count()} GPU(s)")
    return torch.device(text)
