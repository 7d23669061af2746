"""Where work runs: device names as users write them, checked before any work starts; the process allocator;
mixed precision and memory format for a device; stopping cleanly on SIGINT/SIGTERM."""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from khnet.errors import KhnetError, UsageError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

__all__ = ["amp_dtype", "in_main_thread", "resolve_device", "stop_on_signals", "tune_allocator", "use_channels_last"]


def resolve_device(name: str | torch.device, local_rank: int = 0) -> torch.device:
    """``auto`` (CUDA when present, else the CPU), ``cpu``, ``cuda`` (GPU ``local_rank``) or ``cuda:N``.

    Raises:
        UsageError: a name that is no device (``tpu``, ``gpu0``).
        KhnetError: a CUDA device on a machine without CUDA or without that GPU.
    """
    import torch

    text = str(name).strip().lower()
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    if text == "cuda":
        text = f"cuda:{local_rank}"
    if text != "cpu" and not (text.startswith("cuda:") and text[5:].isascii() and text[5:].isdigit()):
        raise UsageError(f"device {str(name)!r} is not one khnet runs on; use auto, cpu, cuda or cuda:N")
    if text.startswith("cuda"):
        if not torch.cuda.is_available():
            raise KhnetError(f"device {str(name)!r} requested but CUDA is not available here; use --device cpu")
        if int(text[5:]) >= torch.cuda.device_count():
            raise KhnetError(f"device {str(name)!r}: this machine has {torch.cuda.device_count()} GPU(s)")
    return torch.device(text)


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -2, -3, -4
_TUNED = {_M_MMAP_MAX: 0, _M_TRIM_THRESHOLD: 1 << 30, _M_TOP_PAD: 64 << 20}
_GLIBC_DEFAULTS = {
    _M_MMAP_MAX: 65536,
    _M_MMAP_THRESHOLD: 128 << 10,
    _M_TRIM_THRESHOLD: 128 << 10,
    _M_TOP_PAD: 128 << 10,
}


def tune_allocator(enable: bool = True) -> bool:
    """Make glibc's malloc keep freed memory in the process instead of returning it to the system.

    By default every CPU tensor over 128 KiB is a fresh ``mmap`` whose pages the kernel faults in and zeroes
    on first touch, and is unmapped when freed; eager PyTorch allocates and frees such tensors for every op,
    so at NAS-Bench-201 sizes a large share of CPU time went to page faults (docs/performance.md: evaluation
    and training steps measured with and without). Tuned: no ``mmap`` for allocations, up to 1 GiB of free
    memory kept at the top of the heap, which then grows in steps of 64 MiB. The process's peak memory is
    unchanged; what it holds after a peak stays held until it exits.

    Applies to the whole process and only on Linux with glibc (elsewhere nothing changes);
    ``KHNET_TUNE_ALLOCATOR=0`` turns it off. ``enable=False`` restores glibc's default values (without its
    dynamic mmap threshold). The CLI calls it once at start-up (it imports no torch).

    Returns:
        True when the settings were applied.
    """
    if enable and os.environ.get("KHNET_TUNE_ALLOCATOR", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    settings = _TUNED if enable else _GLIBC_DEFAULTS
    return all(mallopt(param, value) == 1 for param, value in settings.items())


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``mode`` (``auto``: bf16 on CUDA, off elsewhere; ``off``, ``bf16``, ``fp16``) on
    ``device``; None for float32. Mixed precision is CUDA-only: asked for elsewhere, it warns and is off."""
    import torch

    if mode == "auto":
        mode = "bf16" if device.type == "cuda" else "off"
    if mode != "off" and device.type != "cuda":
        log.warning("amp=%s is only used on CUDA; training in float32 on %s", mode, device)
        return None
    return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[mode]


def use_channels_last(setting: bool | None) -> bool:
    """Whether activations are NHWC: ``setting`` when given, else on (on every device)."""
    # benchmarks/train_throughput.py (docs/performance.md): NHWC made a full iteration 1.47x faster on the
    # 2-core CPU; it is the usual choice for convs on CUDA too.
    return setting if setting is not None else True


@contextmanager
def stop_on_signals(flag: dict[str, str | None]) -> Iterator[None]:
    """While active, SIGINT/SIGTERM set ``flag['reason']`` (the signal's name) instead of stopping the process:
    the training loop saves and stops after the current step. Outside the main thread it does nothing."""
    if not in_main_thread():
        yield
        return
    previous = {}

    def handler(signum, frame):
        flag["reason"] = signal.Signals(signum).name

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def in_main_thread() -> bool:
    """True in the main thread (the only one that may install signal handlers)."""
    import threading

    return threading.current_thread() is threading.main_thread()
