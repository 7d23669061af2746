"""The training recipe's moving parts, shared by the supernet loop and one network from scratch: SGD with its
parameter groups, the cosine learning-rate schedule per step, the seeded initialisation, and the seeded,
resumable batches of an epoch. Every random draw of training comes from a seed given here, never from the
state torch's global generator happens to be in."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import nn

from khnet.config import TrainConfig
from khnet.data import ArrayDataset, AugmentedOrder, default_num_workers
from khnet.errors import UsageError

__all__ = [
    "build_optimizer",
    "epoch_batches",
    "epoch_steps",
    "lr_at",
    "seeded_init",
    "set_learning_rate",
    "set_weight_decay",
    "sgd_optimizer",
]

M = TypeVar("M", bound=nn.Module)


def sgd_optimizer(
    model: nn.Module, config: TrainConfig, scaled: frozenset[int] = frozenset(), lr_scale: float = 1.0
) -> torch.optim.SGD:
    """SGD over ``model`` with the parameter groups ``decay`` (matrices and tensors: conv/linear weights,
    generators, stored kernels, beta) and ``no_decay`` (vectors: BatchNorm and LayerNorm parameters, biases,
    the residual generator's gains), each split again into the parameters whose ids are in ``scaled`` and the
    rest.

    Each group carries two keys of khnet's besides SGD's own, read only by ``set_learning_rate`` and
    ``set_weight_decay`` (change them there, never in the loops): ``lr_scale`` (``lr_scale`` for ``scaled``,
    else 1) multiplies the scheduled learning rate, and ``base_weight_decay`` is the group's decay when decay
    is on (Algorithm 1 turns it off for the subnets' step)."""
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for p in model.parameters():
        groups.setdefault((p.ndim > 1, id(p) in scaled), []).append(p)
    param_groups = []
    for (decays, in_scaled), params in sorted(groups.items(), key=lambda item: (not item[0][0], item[0][1])):
        wd = config.weight_decay if decays else 0.0
        scale = lr_scale if in_scaled else 1.0
        param_groups.append(
            {"params": params, "base_weight_decay": wd, "weight_decay": wd, "lr_scale": scale, "lr": config.lr * scale}
        )
    # foreach: one multi-tensor update instead of a Python loop over ~440 tensors (also on the CPU)
    return torch.optim.SGD(param_groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov, foreach=True)


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.SGD:
    """``sgd_optimizer`` for a supernet: with ``generator_lr_scale != 1`` the kernel source (``model.kernels``)
    gets its own groups at that learning-rate factor; otherwise two groups, decay and no_decay."""
    if config.generator_lr_scale == 1.0:
        return sgd_optimizer(model, config)
    source = frozenset(id(p) for p in model.kernels.parameters())
    return sgd_optimizer(model, config, source, config.generator_lr_scale)


def seeded_init(seed: int, build: Callable[..., M], *args: Any, **kwargs: Any) -> M:
    """``build(*args, **kwargs)`` with its parameters initialised from ``seed``: modules initialise from torch's
    global generator, so it is forked and seeded for the build and the caller's random state is left as it was."""
    with torch.random.fork_rng(devices=[]):  # the CPU generator only: modules are built on the CPU
        torch.manual_seed(seed)
        return build(*args, **kwargs)


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Give every group of an ``sgd_optimizer`` the scheduled ``lr`` times its ``lr_scale`` (1 for groups
    without one: an optimizer restored from a checkpoint of khnet 0.1)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def set_weight_decay(optimizer: torch.optim.Optimizer, enabled: bool) -> None:
    """Turn the weight decay of an ``sgd_optimizer`` on (each group's ``base_weight_decay``) or off (0)."""
    for group in optimizer.param_groups:
        group["weight_decay"] = group["base_weight_decay"] if enabled else 0.0


def epoch_batches(dataset: ArrayDataset, config: TrainConfig, epoch: int, start_step: int, steps: int, pin: bool):
    """The batches of ``epoch`` from ``start_step`` on. Order and augmentation are drawn for the whole epoch from
    one generator seeded by (seed, epoch), so a resumed epoch continues with exactly the images it had left, and
    the images do not depend on the number of loader workers or on torch's global generator."""
    generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
    epoch_items = AugmentedOrder(dataset, torch.randperm(len(dataset), generator=generator), generator)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(epoch_items, range(start_step * config.batch_size, steps * config.batch_size)),
        batch_size=config.batch_size,
        shuffle=False,
        drop_last=True,
        num_workers=config.num_workers if config.num_workers is not None else default_num_workers(),
        pin_memory=pin,
        generator=generator,  # the workers' base seed (they draw nothing) from it too, not from the global one
    )
    return loader


def epoch_steps(num_images: int, config: TrainConfig) -> int:
    """Optimizer steps per epoch: full batches only, capped by ``max_steps_per_epoch``."""
    steps = num_images // config.batch_size
    if steps == 0:
        raise UsageError(f"batch_size={config.batch_size} exceeds the {num_images} training images; lower it")
    return min(steps, config.max_steps_per_epoch) if config.max_steps_per_epoch else steps


def lr_at(config: TrainConfig, global_step: int, total_steps: int) -> float:
    """The learning rate of ``global_step`` of ``total_steps``: cosine from ``lr`` to ``min_lr``."""
    progress = min(1.0, global_step / max(1, total_steps))
    return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1 + math.cos(math.pi * progress))
