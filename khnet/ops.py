"""The NAS-Bench-201 candidate ops and the residual reduction block, as plain ``nn.Module``s.

Module names follow the benchmark's reference code (``op.1`` is the conv, ``op.2`` its BatchNorm), so
state_dict keys match the reference network's. ``OPS`` maps each name in ``OP_NAMES`` to a builder.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from khnet.space import OP_NAMES

__all__ = [
    "OPS",
    "AvgPool",
    "Identity",
    "ReLUConvBN",
    "ReductionBlock",
    "Zero",
    "apply_op",
    "avg_pool_3x3",
    "build_op",
    "relu_conv_bn",
]


class ReLUConvBN(nn.Module):
    """ReLU -> Conv2d(no bias) -> BatchNorm2d, the benchmark's ``nor_conv_kxk``.

    Kept as a Sequential inside ``.op`` so parameters are named ``op.1.weight`` and ``op.2.*``.
    """

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(in_chs, out_chs, kernel_size, stride=stride, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_chs, affine=True, track_running_stats=True),
        )

    @property
    def conv(self) -> nn.Conv2d:
        """The convolution (``op.1``)."""
        return self.op[1]

    @property
    def bn(self) -> nn.BatchNorm2d:
        """The BatchNorm after it (``op.2``)."""
        return self.op[2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)  # (B, out_chs, H/stride, W/stride)


_POOL_CACHE: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def avg_pool_3x3(x: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
    """3x3 average pooling, stride 1, padding 1, not counting the padding: the benchmark's ``avg_pool_3x3``
    (``nn.AvgPool2d(3, 1, 1, count_include_pad=False)``), x (B, C, H, W) -> (B, C, H, W), times ``scale``
    (a scalar tensor, e.g. an op weight of the supernet's teacher) when given.

    On the CPU it is computed as a depthwise 3x3 convolution with a kernel of ones (the window sums) divided
    by the number of in-image pixels of each window: the same values up to float rounding, and 3-4x faster
    than ``avg_pool2d`` at the proxy size here (docs/performance.md). Elsewhere ``avg_pool2d`` itself.
    """
    if x.device.type != "cpu" or x.dim() != 4:
        out = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
        return out if scale is None else out * scale
    C, H, W = x.shape[1:]
    key = (C, H, W, x.dtype)
    cached = _POOL_CACHE.get(key) if type(x) is torch.Tensor else None  # never cache tracing (fake) tensors
    if cached is None:
        ones = torch.ones(C, 1, 3, 3, dtype=x.dtype)
        counts = F.conv2d(torch.ones(1, 1, H, W, dtype=x.dtype), ones[:1], padding=1)  # (1, 1, H, W): 4, 6 or 9
        cached = (ones, counts)
        if type(x) is torch.Tensor:
            _POOL_CACHE[key] = cached
    ones, counts = cached
    sums = F.conv2d(x, ones, padding=1, groups=C)
    return sums / counts if scale is None else sums * (scale / counts)


def relu_conv_bn(x: torch.Tensor, kernel: torch.Tensor, bn: nn.Module) -> torch.Tensor:
    """``nor_conv_kxk`` with an external kernel (C_out, C_in, k, k): ReLU -> bias-free conv (stride 1, same
    padding) -> ``bn``; what ``ReLUConvBN`` computes with its own weight."""
    return bn(F.conv2d(F.relu(x), kernel, padding=kernel.shape[-1] // 2))


def apply_op(op: str, x: torch.Tensor, kernel: torch.Tensor | None = None, bn: nn.Module | None = None) -> torch.Tensor:
    """The candidate op ``op`` on x (B, C, H, W), stride 1, with the conv's kernel and BatchNorm passed in (the
    supernet's edges keep no conv weights of their own). ``none`` gives zeros; callers skip it instead."""
    if op == "skip_connect":
        return x
    if op == "avg_pool_3x3":
        return avg_pool_3x3(x)
    if op == "none":
        return torch.zeros_like(x)
    return relu_conv_bn(x, kernel, bn)


class AvgPool(nn.Module):
    """3x3 average pooling, stride 1, padding 1, not counting the padding (``avg_pool_3x3``, see
    ``avg_pool_3x3``). No parameters or buffers, as in the reference network."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return avg_pool_3x3(x)


class Identity(nn.Module):
    """``skip_connect``: returns its input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Zero(nn.Module):
    """``none``: contributes nothing. Cells skip it instead of calling it; calling it gives zeros."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


class ReductionBlock(nn.Module):
    """The benchmark's residual block between stages (``ResNetBasicblock``, stride 2).

    ``out = downsample(x) + conv_b(conv_a(x))`` with no ReLU after the add; ``downsample`` is
    AvgPool2d(2, 2) then a bias-free 1x1 conv without BN.
    """

    def __init__(self, in_chs: int, out_chs: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(in_chs, out_chs, 3, stride=2)
        self.conv_b = ReLUConvBN(out_chs, out_chs, 3)
        self.downsample = nn.Sequential(
            nn.AvgPool2d(kernel_size=2, stride=2, padding=0),
            nn.Conv2d(in_chs, out_chs, kernel_size=1, stride=1, padding=0, bias=False),
        )
        self.out_dim = out_chs

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, in_chs, H, W) -> (B, out_chs, H/2, W/2)
        return self.downsample(x) + self.conv_b(self.conv_a(x))


def _none(chs: int) -> nn.Module:
    return Zero()


def _skip(chs: int) -> nn.Module:
    return Identity()


def _conv1x1(chs: int) -> nn.Module:
    return ReLUConvBN(chs, chs, 1)


def _conv3x3(chs: int) -> nn.Module:
    return ReLUConvBN(chs, chs, 3)


def _avg_pool(chs: int) -> nn.Module:
    return AvgPool()


OPS: dict[str, Callable[[int], nn.Module]] = {
    "none": _none,
    "skip_connect": _skip,
    "nor_conv_1x1": _conv1x1,
    "nor_conv_3x3": _conv3x3,
    "avg_pool_3x3": _avg_pool,
}
assert tuple(OPS) == OP_NAMES


def build_op(name: str, chs: int) -> nn.Module:
    """The op ``name`` (one of ``OP_NAMES``) on ``chs`` channels, stride 1."""
    return OPS[name](chs)
