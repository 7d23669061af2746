"""Where the supernet's searchable conv kernels come from, one module per method.

All three take the architecture encoding alpha (6 edges x 5 ops) and return, per group of equally shaped
convs, the kernels of the requested layers:

- ``HyperKernels`` (Kshot-Hypernet, Eq. 2-5 of the paper): an MLP-Mixer ``f`` maps alpha to shared features
  z (h x h) and coefficient features; the Coefficient Attention Block rescales the latter before the softmax
  that gives lambda (N). Each conv layer i has its own generator g^i: two linear maps A^i (h -> C_in*N) and
  B^i (h -> C_out*K*K), so the dictionary is w_n = (z A^i_n)^T B^i and W^i = sum_n lambda_n w_n. Linearity gives
  W^i = (z (sum_n lambda_n A^i_n))^T B^i: the N kernels are never materialised.
- ``KshotKernels`` (K-shot NAS): N stored kernels per conv, mixed by lambda from a simplex net (an MLP on alpha).
- ``SharedKernels`` (weight sharing, SPOS/FairNAS): one stored kernel per conv.

A group holds the ``cells_per_stage * 6`` convs of one kernel size in one stage; layer ``l = cell * 6 + edge``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from khnet.config import SupernetConfig
from khnet.space import CONV_OPS, NUM_EDGES, OP_NAMES, Arch

__all__ = [
    "ArchFeatures",
    "CoefficientAttention",
    "ConvGroup",
    "HyperKernels",
    "KernelSource",
    "KernelSpectrum",
    "KshotKernels",
    "MixerBlock",
    "ResidualHyperKernels",
    "SharedKernels",
    "arch_encoding",
    "build_kernel_source",
    "conv_groups",
    "group_name",
    "kernel_spectra",
    "standard_conv_variance",
]


def arch_encoding(arch: Arch) -> torch.Tensor:
    """One-hot alpha (6, 5): edges in canonical order x ops in the benchmark's order."""
    alpha = torch.zeros(NUM_EDGES, len(OP_NAMES))
    alpha[torch.arange(NUM_EDGES), torch.tensor(arch.op_ids)] = 1.0
    return alpha


def standard_conv_variance(in_chs: int, kernel_size: int) -> float:
    """Variance of PyTorch's default Conv2d initialisation (kaiming_uniform, a=sqrt(5)): 1 / (3 fan_in)."""
    return 1.0 / (3 * in_chs * kernel_size * kernel_size)


@dataclass(frozen=True)
class ConvGroup:
    """Equally shaped generated convs: one kernel size in one stage.

    Attributes:
        name: ``s{stage}_k{kernel_size}``.
        stage: 0, 1 or 2.
        op: ``nor_conv_1x1`` or ``nor_conv_3x3``.
        kernel_size: 1 or 3.
        chs: input = output channels.
        num_layers: ``cells_per_stage * 6``; layer ``cell * 6 + edge``.
    """

    name: str
    stage: int
    op: str
    kernel_size: int
    chs: int
    num_layers: int

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """One kernel's shape (C_out, C_in, K, K)."""
        return (self.chs, self.chs, self.kernel_size, self.kernel_size)


def group_name(stage: int, op: str) -> str:
    """The name of the group of ``op``'s generated convs in ``stage``: ``s{stage}_k{kernel size}``."""
    return f"s{stage}_k{CONV_OPS[op]}"


def conv_groups(config: SupernetConfig) -> list[ConvGroup]:
    """The six groups of generated convs (3 stages x 2 kernel sizes)."""
    return [
        ConvGroup(group_name(stage, op), stage, op, k, config.channels << stage, config.cells_per_stage * NUM_EDGES)
        for stage in range(3)
        for op, k in CONV_OPS.items()
    ]


# ---------------------------------------------------------------- architecture features (MLP-Mixer) and CAB
class MixerBlock(nn.Module):
    """One MLP-Mixer layer on (tokens, dim): token mixing across tokens, then channel mixing, pre-norm."""

    def __init__(self, num_tokens: int, dim: int, token_hidden: int, channel_hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.token_mlp = nn.Sequential(
            nn.Linear(num_tokens, token_hidden), nn.GELU(), nn.Linear(token_hidden, num_tokens)
        )
        self.norm2 = nn.LayerNorm(dim)
        self.channel_mlp = nn.Sequential(nn.Linear(dim, channel_hidden), nn.GELU(), nn.Linear(channel_hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (T, D) -> (T, D)
        x = x + self.token_mlp(self.norm1(x).transpose(-1, -2)).transpose(-1, -2)
        return x + self.channel_mlp(self.norm2(x))


class ArchFeatures(nn.Module):
    """The feature network f: alpha (6, 5) -> shared features z (h, h) and coefficient features (6, N).

    Each edge row of alpha is a token embedded to width h (plus a learned per-edge position), followed by
    ``depth`` Mixer layers and a LayerNorm. z is a linear map of all 6 x h token features to h x h entries, so
    it has full rank h for every arch; it is normalised to zero mean and unit variance (the conv that follows
    has BatchNorm, so the scale carries no information).

    ``full_rank=False`` is the form khnet used up to 0.1 (docs/results.md, issue 7): a linear map across the 6
    tokens, (h, 6) -> (h, h), so z = T^T W^T + b had rank <= 7 and so had every generated kernel. That was a
    defect (the paper asks for z in R^{h x h}); it stays reachable as ``generator="paper-rank7"`` only to
    reproduce the study.
    """

    def __init__(
        self, hidden: int, num_kernels: int, depth: int, token_hidden: int, channel_hidden: int, full_rank: bool = True
    ) -> None:
        super().__init__()
        self.hidden, self.full_rank = hidden, full_rank
        self.embed = nn.Linear(len(OP_NAMES), hidden)
        self.position = nn.Parameter(torch.randn(NUM_EDGES, hidden) * 0.02)
        self.blocks = nn.Sequential(
            *(MixerBlock(NUM_EDGES, hidden, token_hidden, channel_hidden) for _ in range(depth))
        )
        self.norm = nn.LayerNorm(hidden)
        if full_rank:
            self.to_z = nn.Linear(NUM_EDGES * hidden, hidden * hidden)  # all token features -> (h, h)
        else:
            self.to_z = nn.Linear(NUM_EDGES, hidden)  # across tokens: (h, 6) -> (h, h), rank <= 7
        self.to_coefficients = nn.Linear(hidden, num_kernels)

    def forward(self, alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.norm(self.blocks(self.embed(alpha) + self.position))  # (6, h)
        if self.full_rank:
            z = self.to_z(tokens.reshape(-1)).view(self.hidden, self.hidden)  # (h, h)
        else:
            z = self.to_z(tokens.transpose(0, 1))  # (h, h), rank <= 7
        z = (z - z.mean()) / (z.std() + 1e-5)
        return z, self.to_coefficients(tokens)  # (h, h), (6, N)


class CoefficientAttention(nn.Module):
    """Coefficient Attention Block: CBAM's channel attention over the N coefficient channels.

    Average- and max-pooled over the 6 tokens, a shared bottleneck MLP, sigmoid, rescale (Fig. 4).
    """

    def __init__(self, num_kernels: int, reduction: int = 4) -> None:
        super().__init__()
        squeezed = max(1, num_kernels // reduction)
        self.mlp = nn.Sequential(nn.Linear(num_kernels, squeezed), nn.ReLU(), nn.Linear(squeezed, num_kernels))

    def forward(self, features: torch.Tensor) -> torch.Tensor:  # (6, N) -> (6, N)
        attention = torch.sigmoid(self.mlp(features.mean(0)) + self.mlp(features.amax(0)))  # (N,)
        return features * attention


# ---------------------------------------------------------------- kernel sources
class KernelSource(nn.Module):
    """Base: ``forward(alpha, layers, uniform)`` -> {group name: kernels (L, C_out, C_in, K, K)}.

    Built from a config (its six groups) or, for analysis, from explicit ``groups``.

    ``layers`` maps a group name to the layer indices wanted (a LongTensor) or None for all of them; groups
    not in ``layers`` are not computed. ``uniform`` fixes lambda to 1/N (the warm-up of Algorithm 1).
    """

    groups: dict[str, ConvGroup]

    def coefficients(self, alpha: torch.Tensor, uniform: bool = False) -> torch.Tensor | None:
        """lambda (N,) for ``alpha``, or None where the method has no dictionary."""
        return None

    def teacher(
        self, alpha: torch.Tensor, layers: dict[str, torch.Tensor | None], uniform: bool = False
    ) -> dict[str, torch.Tensor]:
        """The kernels of the full-supernet teacher for op weights ``alpha`` (6, 5); by default the same
        generator as for a single path, with softmax(beta) as the architecture encoding (the paper)."""
        return self(alpha, layers, uniform)


class HyperKernels(KernelSource):
    """Kshot-Hypernet: per-layer generators g^i over shared architecture features (see the module doc)."""

    def __init__(self, config: SupernetConfig, groups: list[ConvGroup] | None = None) -> None:
        super().__init__()
        h, n = config.hidden, config.num_kernels
        self.num_kernels, self.hidden = n, h
        self.groups = {g.name: g for g in (groups if groups is not None else conv_groups(config))}
        self.features = ArchFeatures(
            h, n, config.mixer_depth, config.mixer_token_hidden, config.mixer_channel_hidden,
            full_rank=config.generator != "paper-rank7",
        )  # fmt: skip
        self.attention = CoefficientAttention(n, config.cab_reduction)
        # With z of unit variance and uniform lambda, var(A) = N/h gives z @ A-bar unit variance, and
        # var(B) = target/h gives kernels of the standard conv initialisation's variance.
        self.in_maps = nn.ParameterDict(
            {
                name: nn.Parameter(torch.randn(n, g.num_layers, h * g.chs) * math.sqrt(n / h))
                for name, g in self.groups.items()
            }
        )  # A: (N, L, h*C_in): dictionary index first, so sum_n lambda_n A_n is one matrix-vector product; 3-D,
        # so that model.to(memory_format=torch.channels_last) leaves it contiguous
        self.out_maps = nn.ParameterDict(
            {
                name: nn.Parameter(
                    torch.randn(g.num_layers, h, g.chs * g.kernel_size**2)
                    * math.sqrt(standard_conv_variance(g.chs, g.kernel_size) / h)
                )
                for name, g in self.groups.items()
            }
        )  # B: (L, h, C_out*K*K)

    def coefficients(self, alpha: torch.Tensor, uniform: bool = False) -> torch.Tensor:
        return self._mix(self.features(alpha)[1], uniform)

    def _mix(self, coefficient_features: torch.Tensor, uniform: bool) -> torch.Tensor:
        if uniform:
            return coefficient_features.new_full((self.num_kernels,), 1.0 / self.num_kernels)
        return torch.softmax(self.attention(coefficient_features).mean(0), dim=0)  # (N,)

    def forward(
        self, alpha: torch.Tensor, layers: dict[str, torch.Tensor | None], uniform: bool = False
    ) -> dict[str, torch.Tensor]:
        z, coefficient_features = self.features(alpha)  # (h, h), (6, N)
        lam = self._mix(coefficient_features, uniform)  # (N,)
        kernels = {}
        for name, index in layers.items():
            g = self.groups[name]
            a, b = self.in_maps[name], self.out_maps[name]  # (N, L, h*C_in), (L, h, C_out*K*K)
            # sum_n lambda_n A_n for every layer, then pick rows: backward then writes A's gradient once
            # (lambda outer the rows' gradients) and autograd saves nothing of size N.
            a_mixed = torch.matmul(lam, a.view(self.num_kernels, -1)).view(g.num_layers, self.hidden, g.chs)
            if index is not None:
                a_mixed, b = a_mixed.index_select(0, index), b.index_select(0, index)  # (L_sel, h, C_in)
            p = torch.matmul(z, a_mixed)  # (L, h, C_in)
            w = torch.matmul(p.transpose(1, 2), b)  # (L, C_in, C_out*K*K)
            w = w.view(-1, g.chs, g.chs, g.kernel_size, g.kernel_size).transpose(1, 2)  # (L, C_out, C_in, K, K)
            kernels[name] = w
        return kernels


class KshotKernels(KernelSource):
    """K-shot NAS: N stored kernels per conv, W = sum_n lambda_n Theta_n, lambda from a simplex net on alpha."""

    def __init__(self, config: SupernetConfig, groups: list[ConvGroup] | None = None) -> None:
        super().__init__()
        n = config.num_kernels
        self.num_kernels = n
        self.groups = {g.name: g for g in (groups if groups is not None else conv_groups(config))}
        self.simplex = nn.Sequential(
            nn.Flatten(0), nn.Linear(NUM_EDGES * len(OP_NAMES), config.simplex_hidden), nn.ReLU(),
            nn.Linear(config.simplex_hidden, n),
        )  # fmt: skip
        # var(Theta) = N * target, so the uniform mixture starts at the standard conv variance.
        self.kernels = nn.ParameterDict(
            {
                name: nn.Parameter(
                    torch.randn(n, g.num_layers, *g.shape) * math.sqrt(n * standard_conv_variance(g.chs, g.kernel_size))
                )
                for name, g in self.groups.items()
            }
        )  # (N, L, C_out, C_in, K, K): dictionary index first, so the mixture is one matrix-vector product

    def coefficients(self, alpha: torch.Tensor, uniform: bool = False) -> torch.Tensor:
        if uniform:
            return alpha.new_full((self.num_kernels,), 1.0 / self.num_kernels)
        return torch.softmax(self.simplex(alpha), dim=0)  # (N,)

    def forward(
        self, alpha: torch.Tensor, layers: dict[str, torch.Tensor | None], uniform: bool = False
    ) -> dict[str, torch.Tensor]:
        lam = self.coefficients(alpha, uniform)
        kernels = {}
        for name, index in layers.items():
            g, theta = self.groups[name], self.kernels[name]
            mixed = torch.matmul(lam, theta.view(self.num_kernels, -1)).view(g.num_layers, *g.shape)
            kernels[name] = mixed if index is None else mixed.index_select(0, index)  # (L, C_out, C_in, K, K)
        return kernels


class SharedKernels(KernelSource):
    """Weight sharing: one stored kernel per conv, the same for every architecture."""

    def __init__(self, config: SupernetConfig, groups: list[ConvGroup] | None = None) -> None:
        super().__init__()
        self.groups = {g.name: g for g in (groups if groups is not None else conv_groups(config))}
        self.kernels = nn.ParameterDict(
            {
                name: nn.Parameter(
                    torch.randn(g.num_layers, math.prod(g.shape))
                    * math.sqrt(standard_conv_variance(g.chs, g.kernel_size))
                )
                for name, g in self.groups.items()
            }
        )  # (L, C_out*C_in*K*K): flat, so that model.to(memory_format=torch.channels_last) leaves it alone

    def forward(
        self, alpha: torch.Tensor, layers: dict[str, torch.Tensor | None], uniform: bool = False
    ) -> dict[str, torch.Tensor]:
        kernels = {}
        for name, index in layers.items():
            flat = self.kernels[name] if index is None else self.kernels[name].index_select(0, index)
            kernels[name] = flat.view(-1, *self.groups[name].shape)  # (L, C_out, C_in, K, K)
        return kernels


class ResidualHyperKernels(KernelSource):
    """Kshot-Hypernet that starts as weight sharing: W^i(alpha) = S^i + s^i G^i(alpha) (beyond the paper).

    S^i is one stored kernel per conv (``SharedKernels``), G^i(alpha) the paper's generated K-shot kernel with
    full-rank z (``HyperKernels``) and s^i a learned gain per conv, starting at ``config.residual_gain``. With
    a small gain, training begins as weight sharing and the hypernetwork learns arch-specific corrections; it
    also scales the generator's step: a change of G moves W by s times as much, and the gradient reaching G is
    s times the kernel's, so an SGD step on G moves W about s^2 times as far as on the unscaled generator (which
    moves a kernel ~100x further per step than a stored one, ``experiments/kernel_step.py``).

    With ``config.teacher_kernels == "shared"`` the full-supernet teacher uses S alone: softmax(beta) is an
    input no single path ever gives the generator.
    """

    def __init__(self, config: SupernetConfig, groups: list[ConvGroup] | None = None) -> None:
        super().__init__()
        groups = groups if groups is not None else conv_groups(config)
        self.groups = {g.name: g for g in groups}
        self.num_kernels = config.num_kernels
        self.teacher_uses_shared = config.teacher_kernels == "shared"
        self.shared = SharedKernels(config, groups)
        self.generated = HyperKernels(config, groups)
        self.gain = nn.ParameterDict(
            {g.name: nn.Parameter(torch.full((g.num_layers,), float(config.residual_gain))) for g in groups}
        )  # s: (L,) per group

    def coefficients(self, alpha: torch.Tensor, uniform: bool = False) -> torch.Tensor:
        return self.generated.coefficients(alpha, uniform)

    def forward(
        self, alpha: torch.Tensor, layers: dict[str, torch.Tensor | None], uniform: bool = False
    ) -> dict[str, torch.Tensor]:
        base = self.shared(alpha, layers)
        delta = self.generated(alpha, layers, uniform)
        kernels = {}
        for name, index in layers.items():
            gain = self.gain[name] if index is None else self.gain[name].index_select(0, index)  # (L_sel,)
            kernels[name] = base[name] + gain.view(-1, 1, 1, 1, 1) * delta[name]  # (L, C_out, C_in, K, K)
        return kernels

    def teacher(
        self, alpha: torch.Tensor, layers: dict[str, torch.Tensor | None], uniform: bool = False
    ) -> dict[str, torch.Tensor]:
        return self.shared(alpha, layers) if self.teacher_uses_shared else self(alpha, layers, uniform)


_SOURCES: dict[str, type[KernelSource]] = {
    "kshot-hypernet": HyperKernels,
    "kshot": KshotKernels,
    "weight-sharing": SharedKernels,
}


def build_kernel_source(config: SupernetConfig) -> KernelSource:
    """The kernel source of ``config.method`` (and, for kshot-hypernet, ``config.generator``)."""
    if config.method == "kshot-hypernet" and config.generator == "residual":
        return ResidualHyperKernels(config)
    return _SOURCES[config.method](config)


# ---------------------------------------------------------------- analysis
@dataclass(frozen=True)
class KernelSpectrum:
    """The singular values of one kernel read as a (C_in, C_out*K*K) matrix.

    Attributes:
        group: its group's name.
        rank: singular values above 1e-11 of the largest (an exact rank defect leaves ~1e-16 in float64).
        in_chs: C_in, the most the rank can be.
        top_share: share of the kernel's energy (squared Frobenius norm) in its top singular direction.
        sigma_ratio: smallest over largest singular value (conditioning).
    """

    group: str
    rank: int
    in_chs: int
    top_share: float
    sigma_ratio: float


def kernel_spectra(source: KernelSource, archs: Iterable[Arch]) -> list[KernelSpectrum]:
    """The spectrum of every kernel ``source`` gives each of ``archs`` (all groups, all layers).

    Kernels are generated by a float64 copy of ``source`` on the CPU: the paper's form is full rank but, for
    C_in = h, so ill-conditioned (sigma_min / sigma_max down to ~1e-6) that float32 round-off would pass for a
    rank defect. ``source`` itself is left untouched.
    """
    source = copy.deepcopy(source).to("cpu", torch.float64)
    out = []
    with torch.no_grad():
        for arch in archs:
            for name, w in source(arch_encoding(arch).double(), dict.fromkeys(source.groups)).items():
                for kernel in w:
                    m = kernel.transpose(0, 1).reshape(kernel.shape[1], -1)  # (C_in, C_out*K*K)
                    sv = torch.linalg.svdvals(m)
                    out.append(KernelSpectrum(
                        name, int((sv > sv[0] * 1e-11).sum()), m.shape[0], float(sv[0] ** 2 / (sv**2).sum()),
                        float(sv[-1] / sv[0]),
                    ))  # fmt: skip
    return out
