"""``StackedNets``: G NAS-Bench-201 networks of one shape computed in one pass, their channels side by side.

Every activation is (B, G*C, H, W): channels ``g*C .. (g+1)*C - 1`` belong to network g. Convolutions are
grouped (``groups=G``), so no network sees another's channels; BatchNorms are per channel, so each network's
batch statistics are exactly its own. On an edge where the networks' ops differ, every op any of them uses is
computed for all channels and a 0/1 mask per channel keeps each network's own (a 1x1 kernel sits at the centre
of a zero 3x3 kernel, networks without a conv there get a zero kernel). The outputs equal the G networks run
one by one, up to float rounding; the cost is one set of (larger) op calls instead of G, which pays where
per-op overhead dominates (small networks on a GPU) and not where memory traffic does (this CPU: see
docs/performance.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from khnet.network import NB201Cell, NB201Net
from khnet.ops import ReductionBlock, ReLUConvBN, avg_pool_3x3
from khnet.space import EDGES, NUM_EDGES, NUM_NODES

__all__ = ["StackedNets"]


def _stacked_bn(norms: Sequence[nn.BatchNorm2d | None], chs: int, like: torch.Tensor) -> nn.BatchNorm2d:
    """One BatchNorm over G*chs channels from G BatchNorms (None: an identity BatchNorm for a masked slot)."""
    bn = nn.BatchNorm2d(chs * len(norms)).to(like)
    with torch.no_grad():
        for g, norm in enumerate(norms):
            if norm is None:
                continue
            part = slice(g * chs, (g + 1) * chs)
            bn.weight[part], bn.bias[part] = norm.weight, norm.bias
            bn.running_mean[part], bn.running_var[part] = norm.running_mean, norm.running_var
            bn.eps = norm.eps
    return bn


def _stacked_conv_bn(ops: Sequence[ReLUConvBN], like: torch.Tensor) -> nn.Sequential:
    """ReLU -> grouped conv -> BatchNorm from G ``ReLUConvBN``s of the same shape."""
    first = ops[0].conv
    conv = nn.Conv2d(
        first.in_channels * len(ops), first.out_channels * len(ops), first.kernel_size, first.stride, first.padding,
        groups=len(ops), bias=False,
    ).to(like)  # fmt: skip
    with torch.no_grad():
        conv.weight.copy_(torch.cat([op.conv.weight for op in ops]))
    return nn.Sequential(nn.ReLU(), conv, _stacked_bn([op.bn for op in ops], first.out_channels, like))


class _StackedReduction(nn.Module):
    def __init__(self, blocks: Sequence[ReductionBlock], like: torch.Tensor) -> None:
        super().__init__()
        self.conv_a = _stacked_conv_bn([b.conv_a for b in blocks], like)
        self.conv_b = _stacked_conv_bn([b.conv_b for b in blocks], like)
        first = blocks[0].downsample[1]
        self.down = nn.Conv2d(first.in_channels * len(blocks), first.out_channels * len(blocks), 1,
                              groups=len(blocks), bias=False).to(like)  # fmt: skip
        with torch.no_grad():
            self.down.weight.copy_(torch.cat([b.downsample[1].weight for b in blocks]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, G*C_in, H, W) -> (B, G*C_out, H/2, W/2)
        return self.down(F.avg_pool2d(x, 2, 2)) + self.conv_b(self.conv_a(x))


class _StackedEdge(nn.Module):
    """One edge of G cells: the ops any of them uses, each network's kept by a channel mask."""

    def __init__(self, ops: Sequence[str], layers: Sequence[nn.Module], chs: int, like: torch.Tensor) -> None:
        super().__init__()
        G = len(ops)
        kinds = set(ops) - {"none"}
        self.uniform = len(set(ops)) == 1  # the same op in every network: no masks
        self.kinds = tuple(sorted(kinds))
        self.conv: nn.Module | None = None
        if kinds & {"nor_conv_1x1", "nor_conv_3x3"}:
            size = 3 if "nor_conv_3x3" in kinds else 1
            conv = nn.Conv2d(G * chs, G * chs, size, padding=size // 2, groups=G, bias=False).to(like)
            with torch.no_grad():
                conv.weight.zero_()
                for g, (op, layer) in enumerate(zip(ops, layers, strict=True)):
                    if op in ("nor_conv_1x1", "nor_conv_3x3"):
                        k = layer.conv.weight  # (C, C, k, k), placed at the centre of the stacked kernel
                        pad = (size - k.shape[-1]) // 2
                        conv.weight[g * chs : (g + 1) * chs, :, pad : pad + k.shape[-1], pad : pad + k.shape[-1]] = k
            norms = [
                layer.bn if op in ("nor_conv_1x1", "nor_conv_3x3") else None
                for op, layer in zip(ops, layers, strict=True)
            ]
            self.conv = nn.Sequential(nn.ReLU(), conv, _stacked_bn(norms, chs, like))
        for kind in ("conv", "avg_pool_3x3", "skip_connect"):
            mask = torch.tensor(
                [float(op in (("nor_conv_1x1", "nor_conv_3x3") if kind == "conv" else (kind,))) for op in ops]
            ).repeat_interleave(chs)
            self.register_buffer(f"mask_{kind}", mask.view(1, -1, 1, 1).to(like), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor | None:  # (B, G*C, H, W) -> same, or None: all `none`
        parts = []
        if self.conv is not None:
            parts.append((self.conv(x), self.mask_conv))
        if "avg_pool_3x3" in self.kinds:
            parts.append((avg_pool_3x3(x), self.mask_avg_pool_3x3))
        if "skip_connect" in self.kinds:
            parts.append((x, self.mask_skip_connect))
        if not parts:
            return None
        if self.uniform:
            return parts[0][0]
        out = parts[0][0] * parts[0][1]
        for y, mask in parts[1:]:
            out = out + y * mask
        return out


class _StackedCell(nn.Module):
    def __init__(self, cells: Sequence[NB201Cell], like: torch.Tensor) -> None:
        super().__init__()
        chs = cells[0].out_dim
        self.edges = nn.ModuleList(
            _StackedEdge([c.arch.ops[e] for c in cells], [c.layers[e] for c in cells], chs, like)
            for e in range(NUM_EDGES)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, G*C, H, W) -> same
        nodes = [x]
        for j in range(1, NUM_NODES):
            out = None
            for e, (dst, src) in enumerate(EDGES):
                if dst != j:
                    continue
                y = self.edges[e](nodes[src])
                if y is not None:
                    out = y if out is None else out + y
            nodes.append(torch.zeros_like(x) if out is None else out)
        return nodes[-1]


class StackedNets(nn.Module):
    """G ``NB201Net``s of the same ``num_classes``, C and N in one module (see the module docstring).

    A copy: changing it leaves the networks alone. ``forward`` returns logits (B, G, num_classes), network g's
    at ``[:, g]``; its train/eval mode and BatchNorm statistics act per network exactly as theirs do.
    """

    def __init__(self, nets: Sequence[NB201Net]) -> None:
        super().__init__()
        if not nets:
            raise ValueError("StackedNets needs at least one network")
        first = nets[0]
        if any((n.num_classes, n.C, n.N) != (first.num_classes, first.C, first.N) for n in nets):
            raise ValueError("StackedNets: the networks differ in num_classes, C or N")
        like = first.classifier.weight
        self.G, self.archs = len(nets), [n.arch for n in nets]
        stem = nn.Conv2d(3, first.C * self.G, 3, padding=1, bias=False).to(like)
        with torch.no_grad():
            stem.weight.copy_(torch.cat([n.stem[0].weight for n in nets]))
        self.stem = nn.Sequential(stem, _stacked_bn([n.stem[1] for n in nets], first.C, like))
        self.cells = nn.ModuleList(
            _StackedReduction([n.cells[i] for n in nets], like)
            if isinstance(first.cells[i], ReductionBlock)
            else _StackedCell([n.cells[i] for n in nets], like)
            for i in range(len(first.cells))
        )
        width = first.classifier.in_features
        self.lastact = nn.Sequential(_stacked_bn([n.lastact[0] for n in nets], width, like), nn.ReLU())
        self.classifier_weight = nn.Parameter(torch.stack([n.classifier.weight.detach() for n in nets]))  # (G, K, 4C)
        self.classifier_bias = nn.Parameter(torch.stack([n.classifier.bias.detach() for n in nets]))  # (G, K)
        self.train(first.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, G, num_classes) for images (B, 3, H, W)."""
        x = self.stem(x)  # (B, G*C, H, W)
        for cell in self.cells:
            x = cell(x)
        features = self.lastact(x).mean(dim=(2, 3)).view(len(x), self.G, -1)  # (B, G, 4C)
        return torch.einsum("bgc,gkc->bgk", features, self.classifier_weight) + self.classifier_bias
