"""The standalone NAS-Bench-201 network, ``NB201Net``: the benchmark's macro skeleton and ops exactly.

Its ``state_dict`` keys are the reference ``TinyNetwork``'s, so weights move between the two as they are.
"""

from __future__ import annotations

import torch
from torch import nn

from khnet.batchnorm import fold_bn
from khnet.ops import ReductionBlock, build_op
from khnet.space import EDGES, NUM_NODES, Arch, ArchLike

__all__ = ["NB201Cell", "NB201Net", "fold_bn", "stage_layout"]


def stage_layout(C: int = 16, N: int = 5) -> list[tuple[int, bool]]:
    """``(channels, is_reduction)`` for each of the ``3N + 2`` blocks in ``cells``."""
    return [(C, False)] * N + [(2 * C, True)] + [(2 * C, False)] * N + [(4 * C, True)] + [(4 * C, False)] * N


class NB201Cell(nn.Module):
    """One searchable cell: 4 nodes, 6 edges in canonical order, output = node 3.

    ``layers[e]`` is the op on canonical edge ``e`` (parameter-free ops have no state_dict keys, but
    their index is reserved, as in the reference). ``none`` edges are never computed; a node with no
    computed input is zero, and the ops that read it still run, exactly as in the reference network.
    """

    def __init__(self, arch: Arch, chs: int) -> None:
        super().__init__()
        self.arch = arch
        self.layers = nn.ModuleList(build_op(op, chs) for op in arch.ops)
        self.node_inputs = tuple(
            tuple((e, src) for e, (dst, src) in enumerate(EDGES) if dst == j and arch.ops[e] != "none")
            for j in range(1, NUM_NODES)
        )
        self.out_dim = chs

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, H, W)
        nodes = [x]
        for inputs in self.node_inputs:
            if not inputs:
                nodes.append(torch.zeros_like(x))
                continue
            out = self.layers[inputs[0][0]](nodes[inputs[0][1]])
            for edge, src in inputs[1:]:
                out = out + self.layers[edge](nodes[src])
            nodes.append(out)
        return nodes[-1]


class NB201Net(nn.Module):
    """A NAS-Bench-201 network (the benchmark's ``TinyNetwork``) for one architecture.

    stem (3x3 conv, BN) -> N cells at C channels -> reduction -> N cells at 2C -> reduction ->
    N cells at 4C -> BN, ReLU -> global average pool -> linear classifier.

    Args:
        arch: an ``Arch``, an arch string or a benchmark index.
        num_classes: classifier outputs.
        C: channels of the first stage (the benchmark uses 16).
        N: cells per stage (the benchmark uses 5).
    """

    def __init__(self, arch: ArchLike, num_classes: int = 10, C: int = 16, N: int = 5) -> None:
        super().__init__()
        self.arch = Arch.coerce(arch)
        self.num_classes, self.C, self.N = num_classes, C, N
        self.stem = nn.Sequential(nn.Conv2d(3, C, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(C))
        cells: list[nn.Module] = []
        prev = C
        for chs, reduction in stage_layout(C, N):
            cells.append(ReductionBlock(prev, chs) if reduction else NB201Cell(self.arch, chs))
            prev = chs
        self.cells = nn.ModuleList(cells)
        self.lastact = nn.Sequential(nn.BatchNorm2d(prev), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(prev, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features, shape (B, 4C)."""
        x = self.stem(x)  # (B, C, H, W)
        for cell in self.cells:
            x = cell(x)  # (B, 4C, H/4, W/4) after the last stage
        x = self.lastact(x)
        return self.global_pooling(x).flatten(1)  # (B, 4C)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes) from pooled features (B, 4C)."""
        return self.classifier(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes) for images (B, 3, H, W)."""
        return self.forward_head(self.forward_features(x))

    @classmethod
    def from_reference_state_dict(cls, arch: ArchLike, state_dict: dict[str, torch.Tensor]) -> NB201Net:
        """The network of ``arch`` with weights of the benchmark's reference ``TinyNetwork`` (e.g. the trained
        weights ``nas_201_api``'s ``get_net_param(index, dataset, seed, hp="200")`` returns, or any xautodl
        TinyNetwork's ``state_dict()``), loaded strictly; C, N and the classes are read from the tensors.

        Raises:
            ValueError: the tensors are not a TinyNetwork of ``arch`` (missing, unexpected or misshapen keys).
        """
        state = {k.removeprefix("module."): v for k, v in state_dict.items()}  # saved from DataParallel
        try:
            C = state["stem.0.weight"].shape[0]
            num_classes = state["classifier.weight"].shape[0]
        except KeyError as err:
            raise ValueError(f"not a TinyNetwork state_dict: no {err.args[0]} tensor") from None
        blocks = {int(k.split(".")[1]) for k in state if k.startswith("cells.")}
        N = (len(blocks) - 2) // 3
        net = cls(arch, num_classes=num_classes, C=C, N=N)
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as err:
            first = str(err).splitlines()[1].strip() if len(str(err).splitlines()) > 1 else str(err)
            raise ValueError(f"these weights are not a TinyNetwork of {net.arch} (C={C}, N={N}): {first}") from None
        return net

    def extra_repr(self) -> str:
        return f"arch={self.arch}, num_classes={self.num_classes}, C={self.C}, N={self.N}"
