"""Configuration dataclasses, with a JSON round trip (``config.json`` beside every saved supernet)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from khnet.errors import ConfigError, require_choice

__all__ = [
    "GENERATORS",
    "METHODS",
    "PROXY_SHAPE",
    "RECIPES",
    "TEACHER_KERNELS",
    "ConfigError",
    "EvalSettings",
    "JsonConfig",
    "SupernetConfig",
    "TrainConfig",
    "recipe_model_config",
]

METHODS = ("kshot-hypernet", "kshot", "weight-sharing")
SAMPLER_NAMES = ("focus-fair", "fairnas", "uniform")  # khnet.samplers.SAMPLERS, in this order
GENERATORS = ("residual", "paper", "paper-rank7")
TEACHER_KERNELS = ("beta", "shared")
_DEFAULT_KERNELS = {"kshot-hypernet": 64, "kshot": 12, "weight-sharing": 1}
# Named recipes for `khnet train --recipe`: settings of SupernetConfig ("model") and TrainConfig ("train").
# "khnet" is the default (docs/results.md, issue 11: it ranks subnets better than weight sharing at the proxy
# scale); "paper" is the paper's exact Algorithm 1 with the paper's generated kernels (z of full rank).
RECIPES: dict[str, dict[str, dict[str, Any]]] = {
    "khnet": {
        "model": {"generator": "residual", "residual_gain": 0.0, "teacher_kernels": "shared"},
        "train": {"subnet_reduction": "mean"},
    },
    "paper": {
        "model": {"generator": "paper", "teacher_kernels": "beta"},
        "train": {"subnet_reduction": "sum"},
    },
}
PROXY_SHAPE = {"channels": 8, "cells_per_stage": 1}  # `khnet train --proxy`: a supernet sized for a CPU
_NON_INT_FIELDS = ("method", "generator", "residual_gain", "teacher_kernels")


class JsonConfig:
    """``to_dict`` / ``from_dict`` for config dataclasses: unknown keys are an error, missing keys take defaults."""

    def to_dict(self) -> dict[str, Any]:
        """Plain values, JSON-ready."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        """Build from ``to_dict`` output."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown config key(s) {', '.join(unknown)} for {cls.__name__}; known keys: {', '.join(sorted(known))}"
            )
        return cls(**data)


@dataclass
class SupernetConfig(JsonConfig):
    """How a supernet is built. Defaults are the paper's (NAS-Bench-201 skeleton, h=32, N=64).

    Attributes:
        method: ``kshot-hypernet`` (generated K-shot dictionaries, the paper), ``kshot`` (K-shot NAS: stored
            kernels mixed by a simplex net) or ``weight-sharing`` (one stored kernel per op, SPOS/FairNAS).
        channels: channels of the first stage (C; stages have C, 2C, 4C).
        cells_per_stage: searchable cells per stage (the benchmark's N).
        num_classes: classifier outputs.
        hidden: width h of the architecture features; z is h x h.
        num_kernels: size of the kernel dictionary (N in the paper); None = the method's default
            (64 for kshot-hypernet, 12 for kshot, 1 for weight-sharing).
        mixer_depth: MLP-Mixer layers in the architecture feature network.
        mixer_token_hidden: hidden width of the token-mixing MLPs (across the 6 edge tokens).
        mixer_channel_hidden: hidden width of the channel-mixing MLPs (across h).
        cab_reduction: bottleneck ratio of the Coefficient Attention Block's shared MLP.
        simplex_hidden: hidden width of K-shot's simplex net.
        generator: how kshot-hypernet forms a kernel. ``residual`` (the default, beyond the paper):
            W = S + s G(alpha), a stored kernel S per conv plus the generated kernel scaled by a learned gain s
            that starts at ``residual_gain``, so training starts as (or, with a gain > 0, close to) weight
            sharing. ``paper``: W = G(alpha),
            the paper's form with full-rank z. ``paper-rank7``: the paper's form as khnet built it up to 0.1,
            with z of rank <= 7 (a defect); only to reproduce the issue-7 runs in docs/results.md.
        residual_gain: initial gain s of the ``residual`` generator. 0 (the default) starts exactly as weight
            sharing: the gains learn from <dL/dW, G(alpha)>, and G from the gains once they move.
        teacher_kernels: kernels of the full-supernet teacher with the ``residual`` generator: ``shared`` (S
            alone, the default: softmax(beta) is an input no single path ever gives the generator) or ``beta``
            (S + s G(softmax(beta)), the paper's choice of encoding).
    """

    method: str = "kshot-hypernet"
    channels: int = 16
    cells_per_stage: int = 5
    num_classes: int = 10
    hidden: int = 32
    num_kernels: int | None = None
    mixer_depth: int = 2
    mixer_token_hidden: int = 24
    mixer_channel_hidden: int = 64
    cab_reduction: int = 4
    simplex_hidden: int = 64
    generator: str = "residual"
    residual_gain: float = 0.0
    teacher_kernels: str = "shared"

    def __post_init__(self) -> None:
        require_choice("method", self.method, METHODS, ConfigError)
        require_choice("generator", self.generator, GENERATORS, ConfigError)
        require_choice("teacher_kernels", self.teacher_kernels, TEACHER_KERNELS, ConfigError)
        if isinstance(self.residual_gain, bool) or not isinstance(self.residual_gain, (int, float)):
            raise ConfigError(f"residual_gain={self.residual_gain!r} must be a number")
        if not math.isfinite(self.residual_gain) or self.residual_gain < 0:
            raise ConfigError(f"residual_gain={self.residual_gain!r} must be finite and >= 0")
        if self.num_kernels is None:
            self.num_kernels = _DEFAULT_KERNELS[self.method]
        for f in fields(self):
            if f.name in _NON_INT_FIELDS:
                continue
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{f.name}={value!r} must be a positive integer")
        if self.method == "weight-sharing" and self.num_kernels != 1:
            raise ConfigError(f"num_kernels={self.num_kernels}: weight-sharing stores exactly 1 kernel per op")
        if self.method == "kshot-hypernet" and self.cab_reduction > self.num_kernels:
            raise ConfigError(
                f"cab_reduction={self.cab_reduction} exceeds num_kernels={self.num_kernels}; use at most num_kernels"
            )

    def to_json(self, path: str | Path) -> None:
        """Write ``config.json`` atomically."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        tmp.replace(path)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SupernetConfig:
        """Build from ``to_dict`` output. A kshot-hypernet config saved before ``generator`` existed (khnet
        <= 0.1) describes the rank-7 form it was trained with, so it loads as ``paper-rank7``."""
        if data.get("method", "kshot-hypernet") == "kshot-hypernet" and "generator" not in data:
            data = {**data, "generator": "paper-rank7"}
        return super().from_dict(data)

    @classmethod
    def from_json(cls, path: str | Path) -> SupernetConfig:
        """Read a config written by ``to_json``."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ConfigError(f"cannot read supernet config {path}: {err}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must hold a JSON object of config keys")
        return cls.from_dict(data)


def recipe_model_config(
    recipe: str = "khnet", method: str = "kshot-hypernet", proxy: bool = False, **overrides: Any
) -> SupernetConfig:
    """The ``SupernetConfig`` that ``khnet train --recipe RECIPE --method METHOD [--proxy]`` trains: the recipe's
    kernel settings (``RECIPES[recipe]["model"]``, Kshot-Hypernet only), the CPU-sized shape with ``proxy``
    (``PROXY_SHAPE``: C=8, N=1), then every override that is not None (e.g. ``channels=4``, ``generator="paper"``).

    Raises:
        ConfigError: an unknown recipe, or a config the overrides make invalid.
    """
    require_choice("recipe", recipe, RECIPES, ConfigError)
    settings: dict[str, Any] = dict(PROXY_SHAPE) if proxy else {}
    if method == "kshot-hypernet":
        settings.update(RECIPES[recipe]["model"])
    settings.update({k: v for k, v in overrides.items() if v is not None})
    return SupernetConfig(method=method, **settings)


@dataclass(frozen=True)
class EvalSettings:
    """What an evaluation measures; two evaluations are interchangeable when these are equal.

    Attributes:
        dataset: dataset name for ``load_dataset``.
        split: ``valid`` (held out from training; use it to select) or ``test``.
        test_images: evaluate on a seeded subset of this many images (None: the whole split).
        calib_images: images for BatchNorm recalibration (the paper: 2,048), from the training split.
        calib_seed: seed of the recalibration subset (and of the ``test_images`` subset).
        valid_fraction, split_seed: how the valid split was carved (as in training).
        batch_size: images per forward pass.
        data_dir: where datasets live.
    """

    dataset: str = "sample"
    split: str = "test"
    test_images: int | None = None
    calib_images: int = 2048
    calib_seed: int = 0
    valid_fraction: float = 0.1
    split_seed: int = 0
    batch_size: int = 512
    data_dir: str | None = None

    def key(self) -> str:
        """The settings that change results (batch size and location do not)."""
        return (
            f"{self.dataset}|{self.split}|{self.test_images}|{self.calib_images}|{self.calib_seed}|"
            f"{self.valid_fraction}|{self.split_seed}"
        )


@dataclass
class TrainConfig(JsonConfig):
    """How a supernet is trained. Defaults are the paper's (Section 4, Algorithm 1), except that the K subnet
    losses are averaged (``subnet_reduction="mean"``, khnet's recipe; ``RECIPES["paper"]`` sums them).

    Attributes:
        dataset: a name for ``khnet.data.load_dataset`` (``sample``, ``cifar10``, ``imagefolder:PATH``, ...).
        data_dir: where datasets live (default ``$KHNET_DATA`` or ``~/.cache/khnet/data``).
        epochs: training epochs (E).
        batch_size: images per step (on every rank).
        lr: initial learning rate, cosine-decayed per step to ``min_lr``.
        min_lr: final learning rate.
        momentum, nesterov: SGD momentum.
        weight_decay: L2 on conv/linear weights and beta, teacher step only.
        warmup_epochs: epochs with lambda fixed to 1/N (E_w).
        sampler: ``focus-fair``, ``fairnas`` or ``uniform``.
        tau: Focus-Fair temperature.
        num_subnets: subnets per step (K).
        distill: subnets learn the teacher's soft labels (True) or the true labels (False, Table 3 ablation).
        distill_warmup_epochs: with ``distill``, subnets learn the true labels for this many first epochs and
            the soft labels after (0 = the paper). An untrained teacher's soft labels are near uniform, and
            K subnets pulling the shared weights towards them slow the teacher down (experiments/).
        subnet_reduction: ``mean`` (the default) divides the K subnet gradients by K, so the subnets weigh as
            much as the teacher; ``sum`` accumulates them as FairNAS does (the paper, ``--recipe paper``).
        grad_clip: max gradient norm per step, or None for no clipping (the paper does not clip).
        generator_lr_scale: multiplies the learning rate of the kernel source (``model.kernels``: for
            kshot-hypernet the MLP-Mixer, the CAB and the generator maps A and B; for kshot the stored
            kernels and the simplex net; for weight-sharing the kernels). 1.0 = the paper. One SGD step on a
            bilinear generator W = (z sum lambda_n A_n)^T B moves W about 140x further than the same step on a
            stored kernel at the proxy scale (``experiments/kernel_step.py``); 0.01 brings that step in line,
            but made the subnets worse in the proxy study (docs/results.md): an option for experiments.
        valid_fraction: share of the training images held out for validation (never trained on).
        max_steps_per_epoch: cap on steps per epoch (quick experiments), or None for full epochs.
        seed: seeds data order, augmentation, initialisation and sampling.
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
        channels_last: NHWC activations; None = on (measured faster on CPU, see docs/performance.md, and CUDA).
        amp: ``auto`` (bf16 on CUDA, off on CPU), ``off``, ``bf16`` or ``fp16``.
        num_workers: loader processes, None for the machine's default.
    """

    dataset: str = "sample"
    data_dir: str | None = None
    epochs: int = 300
    batch_size: int = 256
    lr: float = 0.2
    min_lr: float = 0.0
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    warmup_epochs: int = 5
    sampler: str = "focus-fair"
    tau: float = 1.5
    num_subnets: int = 5
    distill: bool = True
    distill_warmup_epochs: int = 0
    subnet_reduction: str = "mean"
    grad_clip: float | None = None
    generator_lr_scale: float = 1.0
    valid_fraction: float = 0.1
    max_steps_per_epoch: int | None = None
    seed: int = 0
    device: str = "auto"
    channels_last: bool | None = None
    amp: str = "auto"
    num_workers: int | None = None

    def __post_init__(self) -> None:
        positive = ("epochs", "batch_size", "num_subnets")
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}={value!r} must be a positive integer")
        if not (self.lr > 0 and self.min_lr >= 0 and self.weight_decay >= 0 and self.tau > 0):
            raise ConfigError(
                f"lr={self.lr}, min_lr={self.min_lr}, weight_decay={self.weight_decay}, tau={self.tau}: "
                "lr and tau must be positive, min_lr and weight_decay non-negative"
            )
        if self.warmup_epochs < 0 or self.distill_warmup_epochs < 0:
            raise ConfigError(
                f"warmup_epochs={self.warmup_epochs}, distill_warmup_epochs={self.distill_warmup_epochs} must be >= 0"
            )
        if not self.generator_lr_scale > 0:
            raise ConfigError(f"generator_lr_scale={self.generator_lr_scale} must be positive")
        if self.subnet_reduction not in ("sum", "mean"):
            raise ConfigError(f"subnet_reduction={self.subnet_reduction!r}; choose sum or mean")
        require_choice("sampler", self.sampler, SAMPLER_NAMES, ConfigError)
        if self.sampler != "uniform" and self.num_subnets > 5:
            raise ConfigError(f"num_subnets={self.num_subnets}: fair samplers draw at most 5 (one per op)")
        if self.amp not in ("auto", "off", "bf16", "fp16"):
            raise ConfigError(f"amp={self.amp!r}; choose auto, off, bf16 or fp16")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise ConfigError(f"max_steps_per_epoch={self.max_steps_per_epoch} must be positive or None")
        numbers = {k: getattr(self, k) for k in ("lr", "min_lr", "weight_decay", "tau", "generator_lr_scale",
                                                 "momentum", "valid_fraction")}  # fmt: skip
        if self.grad_clip is not None:
            numbers["grad_clip"] = self.grad_clip
        bad = [f"{k}={v}" for k, v in numbers.items() if not math.isfinite(v)]
        if bad:
            raise ConfigError(f"{', '.join(bad)}: give finite numbers")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"momentum={self.momentum} must be in [0, 1)")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError(f"grad_clip={self.grad_clip} must be positive (or off)")
        if self.num_workers is not None and self.num_workers < 0:
            raise ConfigError(f"num_workers={self.num_workers} must be >= 0")
        if not 0 <= self.seed < 2**32:
            raise ConfigError(f"seed={self.seed} must be in 0..{2**32 - 1}")
        if not 0 <= self.valid_fraction < 1:
            raise ConfigError(f"valid_fraction={self.valid_fraction} must be in [0, 1)")
