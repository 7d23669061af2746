"""The supernet over NAS-Bench-201: every op on every edge of every cell, with generated conv kernels.

``SuperNet(config)`` has the benchmark's skeleton (stem, 3 stages of ``cells_per_stage`` cells, two residual
reduction blocks, BN-ReLU, pooling, classifier). Stem, reductions and classifier are ordinary parameters
shared by all subnets; each conv op of each edge keeps its own affine BatchNorm; the conv kernels come from
the method's kernel source (``khnet.hypernet``); ``beta`` (6 x 5, shared by all cells) weighs the ops of the
full-supernet teacher.

- ``forward(x, arch)``: a single path, only the arch's ops computed, ``none`` skipped.
- ``forward_teacher(x)``: every op on every edge weighted by softmax(beta) (Eq. 6), kernels generated from
  alpha = softmax(beta).
- ``subnet(arch)``: a standalone ``NB201Net`` with the generated kernels baked in.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from khnet.config import SupernetConfig
from khnet.files import (
    CONFIG_FILE,
    MODEL_FILE,
    load_weights,
    model_config_from_dict,
    read_model_config,
    write_supernet_files,
)
from khnet.hypernet import arch_encoding, build_kernel_source, group_name
from khnet.network import NB201Net, stage_layout
from khnet.ops import ReductionBlock, apply_op, avg_pool_3x3
from khnet.space import CONV_OPS, EDGES, NUM_EDGES, NUM_NODES, OP_NAMES, Arch, ArchLike

__all__ = ["SuperCell", "SuperEdge", "SuperNet", "path_plan"]


class SuperEdge(nn.Module):
    """The candidate ops of one edge. Conv kernels are passed in; each conv op owns its affine BatchNorm."""

    def __init__(self, chs: int) -> None:
        super().__init__()
        self.bn = nn.ModuleDict({op: nn.BatchNorm2d(chs) for op in CONV_OPS})

    def forward(self, x: torch.Tensor, op: str, kernel: torch.Tensor | None = None) -> torch.Tensor:
        """``op`` applied to x (B, C, H, W); ``kernel`` (C, C, K, K) for conv ops. Never called for ``none``."""
        return apply_op(op, x, kernel, self.bn[op] if op in CONV_OPS else None)

    def forward_mixed(self, x: torch.Tensor, weights: torch.Tensor, kernels: dict[str, torch.Tensor]) -> torch.Tensor:
        """sum over ops of ``weights[k] * op_k(x)`` (``weights`` (5,) in ``OP_NAMES`` order; ``none`` adds
        nothing); ``kernels`` maps each conv op to its (C, C, K, K) kernel. The same value as weighting
        ``forward``'s outputs, computed with less memory traffic: one ReLU for both convs, each weight folded
        into its BatchNorm's affine transform and the pooling's divisor."""
        skip, conv1, conv3, pool = (weights[OP_NAMES.index(op)] for op in OP_NAMES[1:])
        out = skip * x + avg_pool_3x3(x, pool)
        relu = F.relu(x)
        for op, w in (("nor_conv_1x1", conv1), ("nor_conv_3x3", conv3)):
            kernel = kernels[op]
            out = out + _scaled_batch_norm(self.bn[op], F.conv2d(relu, kernel, padding=kernel.shape[-1] // 2), w)
        return out


def _scaled_batch_norm(bn: nn.BatchNorm2d, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``scale * bn(x)`` as one BatchNorm with the affine weight and bias times ``scale``; updates the running
    statistics (and ``num_batches_tracked``) exactly as ``bn(x)`` would."""
    use_batch_stats = bn.training or bn.running_mean is None
    momentum = 0.0 if bn.momentum is None else bn.momentum
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        if bn.momentum is None:
            momentum = 1.0 / float(bn.num_batches_tracked)
    return F.batch_norm(
        x,
        bn.running_mean if not bn.training or bn.track_running_stats else None,
        bn.running_var if not bn.training or bn.track_running_stats else None,
        bn.weight * scale,
        bn.bias * scale,
        use_batch_stats,
        momentum,
        bn.eps,
    )


class SuperCell(nn.Module):
    """A searchable cell holding all ops of its six edges (canonical order)."""

    def __init__(self, chs: int) -> None:
        super().__init__()
        self.edges = nn.ModuleList(SuperEdge(chs) for _ in range(NUM_EDGES))

    def forward_path(self, x: torch.Tensor, arch: Arch, kernels: list[torch.Tensor | None]) -> torch.Tensor:
        """Single path: node j = sum of the arch's non-``none`` ops into j; a node with none is zero."""
        nodes = [x]
        for j in range(1, NUM_NODES):
            out = None
            for e, (dst, src) in enumerate(EDGES):
                if dst == j and arch.op_ids[e] != 0:
                    y = self.edges[e](nodes[src], arch.ops[e], kernels[e])
                    out = y if out is None else out + y
            nodes.append(torch.zeros_like(x) if out is None else out)
        return nodes[-1]  # (B, C, H, W)

    def forward_mixed(
        self, x: torch.Tensor, op_weights: torch.Tensor, kernels: dict[tuple[int, str], torch.Tensor]
    ) -> torch.Tensor:
        """Every op on every edge, weighted by ``op_weights`` (6, 5); ``none`` adds nothing."""
        nodes = [x]
        for j in range(1, NUM_NODES):
            out = None
            for e, (dst, src) in enumerate(EDGES):
                if dst == j:
                    edge_kernels = {op: kernels[(e, op)] for op in CONV_OPS}
                    y = self.edges[e].forward_mixed(nodes[src], op_weights[e], edge_kernels)
                    out = y if out is None else out + y
            nodes.append(out)
        return nodes[-1]


@lru_cache(maxsize=4096)
def path_plan(arch: Arch, cells_per_stage: int) -> tuple[dict[str, list[int]], tuple[tuple[int, ...], ...]]:
    """Which kernels ``arch``'s single path needs: per conv group (``group_name``), the layer indices to generate
    (``cell * NUM_EDGES + edge`` for every cell of a stage and edge with that op), and for each (cell in stage,
    edge) the row of its kernel among that group's generated ones (-1 for an edge without a conv)."""
    layers: dict[str, list[int]] = {}
    rows = [[-1] * NUM_EDGES for _ in range(cells_per_stage)]
    for op in CONV_OPS:
        edges = [e for e in range(NUM_EDGES) if arch.ops[e] == op]
        if not edges:
            continue
        for stage in range(3):
            layers[group_name(stage, op)] = [c * NUM_EDGES + e for c in range(cells_per_stage) for e in edges]
        for c in range(cells_per_stage):
            for r, e in enumerate(edges):
                rows[c][e] = c * len(edges) + r
    return layers, tuple(tuple(r) for r in rows)


class SuperNet(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="khnet",
    license="mit",
    tags=["neural-architecture-search", "nas-bench-201", "hypernetwork", "supernet"],
    repo_url="https://github.com/khnet/khnet",
):
    """The Kshot-Hypernet supernet (or a baseline, by ``config.method``) on the NAS-Bench-201 skeleton.

    Hub conventions come from huggingface_hub's ``PyTorchModelHubMixin``: ``SuperNet.from_pretrained(ID or
    folder)``, ``.save_pretrained(folder)`` (``model.safetensors`` and a flat ``config.json``, as khnet writes
    them: ``khnet.files``) and ``.push_to_hub(repo_id)``. Loading is strict: every tensor must match the config.

    Args:
        config: a ``SupernetConfig`` (or its dict, flat as in ``config.json``); the defaults are the paper's.
    """

    def __init__(self, config: SupernetConfig | dict | None = None) -> None:
        super().__init__()
        if isinstance(config, dict):
            config = model_config_from_dict(config)
        self.config = config = config if config is not None else SupernetConfig()
        C, N = config.channels, config.cells_per_stage
        self.stem = nn.Sequential(nn.Conv2d(3, C, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(C))
        cells: list[nn.Module] = []
        self.cell_stage: list[tuple[int, int] | None] = []  # per cell: (stage, index in stage), None for reductions
        prev, stage, in_stage = C, 0, 0
        for chs, reduction in stage_layout(C, N):
            if reduction:
                cells.append(ReductionBlock(prev, chs))
                self.cell_stage.append(None)
                stage, in_stage = stage + 1, 0
            else:
                cells.append(SuperCell(chs))
                self.cell_stage.append((stage, in_stage))
                in_stage += 1
            prev = chs
        self.cells = nn.ModuleList(cells)
        self.lastact = nn.Sequential(nn.BatchNorm2d(prev), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(prev, config.num_classes)
        self.beta = nn.Parameter(1e-3 * torch.randn(NUM_EDGES, len(OP_NAMES)))  # architecture parameters
        self.kernels = build_kernel_source(config)

    # ---------------------------------------------------------------- the Hub (PyTorchModelHubMixin hooks)
    def _save_pretrained(self, save_directory: Path) -> None:
        from khnet import __version__

        write_supernet_files(save_directory, self.state_dict(), self.config.to_dict(), {"khnet_version": __version__})

    def generate_model_card(self, *args: Any, **kwargs: Any):
        """khnet's model card (``khnet.card.model_card``) for ``save_pretrained`` / ``push_to_hub``."""
        from khnet.card import model_card

        return model_card({"model": self.config.to_dict()}, self.param_counts())

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        force_download: bool = False,
        local_files_only: bool = False,
        token: str | bool | None = None,
        map_location: str = "cpu",
        **_: Any,  # the mixin also passes the config it read, and (older releases) proxies / resume_download
    ) -> SuperNet:
        folder = Path(model_id)
        if not folder.is_dir():
            from huggingface_hub import snapshot_download

            folder = Path(
                snapshot_download(
                    model_id, revision=revision, cache_dir=cache_dir, force_download=force_download,
                    local_files_only=local_files_only, token=token, allow_patterns=[MODEL_FILE, CONFIG_FILE],
                )
            )  # fmt: skip
        path = folder / MODEL_FILE
        return load_weights(cls(read_model_config(path)).to(map_location), path, map_location)

    # ---------------------------------------------------------------- kernels
    def op_weights(self) -> torch.Tensor:
        """softmax(beta) per edge (6, 5): the teacher's op weights and its architecture encoding."""
        return torch.softmax(self.beta, dim=-1)

    def path_kernels(self, arch: Arch, warmup: bool = False) -> list[list[torch.Tensor | None]]:
        """Generated kernels of ``arch``: per searchable cell (in order), per edge, (C, C, K, K) or None."""
        layers, rows = path_plan(arch, self.config.cells_per_stage)
        device = self.beta.device
        alpha = arch_encoding(arch).to(device=device, dtype=self.beta.dtype)
        index = {name: torch.tensor(rows_, device=device) for name, rows_ in layers.items()}
        generated = self.kernels(alpha, index, uniform=warmup)
        out = []
        for slot in self.cell_stage:
            if slot is None:
                continue
            stage, c = slot
            out.append(
                [
                    generated[group_name(stage, op)][rows[c][e]] if op in CONV_OPS else None
                    for e, op in enumerate(arch.ops)
                ]
            )
        return out

    # ---------------------------------------------------------------- forward passes
    def forward(self, x: torch.Tensor, arch: Arch, warmup: bool = False) -> torch.Tensor:
        """Logits (B, classes) of the single path ``arch``; ``warmup`` fixes lambda to 1/N."""
        kernels = iter(self.path_kernels(arch, warmup))
        x = self.stem(x)  # (B, C, H, W)
        for cell in self.cells:
            x = cell(x) if isinstance(cell, ReductionBlock) else cell.forward_path(x, arch, next(kernels))
        return self.classifier(self.global_pooling(self.lastact(x)).flatten(1))  # (B, classes)

    def forward_teacher(self, x: torch.Tensor, warmup: bool = False) -> torch.Tensor:
        """Logits (B, classes) of the full supernet: all ops mixed by softmax(beta) (Eq. 6)."""
        return self.forward_mixed(x, self.op_weights(), warmup)

    def forward_mixed(self, x: torch.Tensor, op_weights: torch.Tensor, warmup: bool = False) -> torch.Tensor:
        """Logits (B, classes) with every op of every edge computed and weighted by ``op_weights`` (6, 5),
        kernels generated from ``op_weights`` as the architecture encoding."""
        generated = self.kernels.teacher(op_weights, dict.fromkeys(self.kernels.groups), uniform=warmup)
        x = self.stem(x)
        for cell, slot in zip(self.cells, self.cell_stage, strict=True):
            if slot is None:
                x = cell(x)
                continue
            stage, c = slot
            kernels = {
                (e, op): generated[group_name(stage, op)][c * NUM_EDGES + e]
                for e in range(NUM_EDGES)
                for op in CONV_OPS
            }
            x = cell.forward_mixed(x, op_weights, kernels)
        return self.classifier(self.global_pooling(self.lastact(x)).flatten(1))

    # ---------------------------------------------------------------- deployment
    @torch.no_grad()
    def subnet(self, arch: ArchLike, warmup: bool = False) -> NB201Net:
        """A standalone ``NB201Net`` for ``arch`` with the generated kernels and the op BatchNorms baked in.

        In eval mode its logits equal ``forward(x, arch)``. It is returned in this supernet's train/eval mode,
        on its device.
        """
        arch = Arch.coerce(arch)
        cfg = self.config
        net = NB201Net(arch, num_classes=cfg.num_classes, C=cfg.channels, N=cfg.cells_per_stage)
        net.to(device=self.beta.device, dtype=self.beta.dtype)
        with torch.no_grad():  # module to module: the skeleton is shared, each conv edge gets its kernel and BN
            for name in ("stem", "lastact", "classifier"):
                getattr(net, name).load_state_dict(getattr(self, name).state_dict())
            kernels = iter(self.path_kernels(arch, warmup))
            for own, cell, slot in zip(self.cells, net.cells, self.cell_stage, strict=True):
                if slot is None:  # a reduction block
                    cell.load_state_dict(own.state_dict())
                    continue
                for edge, layer, op, kernel in zip(own.edges, cell.layers, arch.ops, next(kernels), strict=True):
                    if kernel is not None:
                        layer.conv.weight.copy_(kernel)
                        layer.bn.load_state_dict(edge.bn[op].state_dict())
        return net.train(self.training)

    def param_counts(self) -> dict[str, int]:
        """Parameters per part: shared skeleton, op BatchNorms, kernel source parts, beta."""
        counts: dict[str, int] = {}
        for name, p in self.named_parameters():
            if name.startswith("kernels."):
                part = "kernels." + name.split(".")[1]
            elif name == "beta":
                part = "beta"
            elif ".edges." in name:
                part = "op_batchnorms"
            else:
                part = "skeleton"  # stem, reduction blocks, lastact, classifier
            counts[part] = counts.get(part, 0) + p.numel()
        counts["total"] = sum(p.numel() for p in self.parameters())
        return counts
