"""Train one arch from scratch as a standalone ``NB201Net``: the baseline that inherited weights are judged by.

The recipe is the supernet's own (``TrainConfig``: data, split, batch size, SGD with Nesterov momentum,
cosine-decayed learning rate per step, weight decay off BatchNorm and biases, seed), so that "the same archs
trained from scratch for the same epochs" means exactly that. One plain step per batch: forward, cross-entropy
with the labels, backward, SGD step.

    from khnet.scratch import train_from_scratch
    result = train_from_scratch("|nor_conv_3x3~0|+|...|", TrainConfig(dataset="sample", epochs=10), channels=8)
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

from khnet.config import TrainConfig
from khnet.data import load_dataset
from khnet.errors import TrainingDiverged
from khnet.evaluate import EvalSettings, eval_data, measure_accuracy
from khnet.network import NB201Net
from khnet.optim import epoch_batches, epoch_steps, lr_at, seeded_init, set_learning_rate, sgd_optimizer
from khnet.runtime import resolve_device, use_channels_last
from khnet.space import Arch, ArchLike

__all__ = ["ScratchResult", "train_from_scratch", "train_network"]


@dataclass
class ScratchResult:
    """One arch trained from scratch. Accuracies in percent on the ``valid`` split and the test set; the final
    epoch's training loss and accuracy (augmented images, network in train mode); wall seconds of training."""

    index: int
    arch: str
    epochs: int
    valid_accuracy: float
    test_accuracy: float
    train_loss: float
    train_accuracy: float
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """Plain values, e.g. for a CSV row."""
        return asdict(self)


def train_from_scratch(
    arch: ArchLike, config: TrainConfig, channels: int = 16, cells_per_stage: int = 5
) -> ScratchResult:
    """Train ``arch`` alone for ``config.epochs`` epochs and test it on the valid split and the test set.

    Args:
        arch: an ``Arch``, arch string or benchmark index.
        config: the training recipe (the supernet fields such as ``sampler`` or ``distill`` are ignored).
        channels: channels of the first stage (C; the benchmark: 16).
        cells_per_stage: cells per stage (N; the benchmark: 5).
    """
    return train_network(Arch.coerce(arch), config, channels, cells_per_stage)[1]


def train_network(
    arch: Arch, config: TrainConfig, channels: int = 16, cells_per_stage: int = 5
) -> tuple[NB201Net, ScratchResult]:
    """``train_from_scratch`` that also returns the trained network (eval mode, its own BatchNorm statistics):
    what ``khnet train --arch`` saves."""
    device = resolve_device(config.device)
    train_set = load_dataset(
        config.dataset, "train", root=config.data_dir, valid_fraction=config.valid_fraction, seed=config.seed
    )
    steps_per_epoch = epoch_steps(len(train_set), config)
    total_steps = steps_per_epoch * config.epochs
    nhwc = use_channels_last(config.channels_last)
    memory_format = torch.channels_last if nhwc else torch.contiguous_format
    net = seeded_init(
        config.seed, NB201Net, arch, C=channels, N=cells_per_stage, num_classes=train_set.info.num_classes
    )
    net = net.to(device, memory_format=memory_format)
    optimizer = sgd_optimizer(net, config)

    start, global_step = time.perf_counter(), 0
    for epoch in range(config.epochs):
        net.train()
        loss_sum = correct = seen = 0
        for x, y in epoch_batches(train_set, config, epoch, 0, steps_per_epoch, device.type == "cuda"):
            x, y = x.to(device, memory_format=memory_format), y.to(device)
            lr = lr_at(config, global_step, total_steps)
            set_learning_rate(optimizer, lr)
            logits = net(x)
            loss = F.cross_entropy(logits, y)
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"{arch}: loss is {loss.item()} at epoch {epoch + 1}; lower the learning rate")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip)
            optimizer.step()
            global_step += 1
            loss_sum += loss.item() * len(y)
            correct += (logits.argmax(-1) == y).sum().item()
            seen += len(y)
    seconds = time.perf_counter() - start

    net.eval()
    accuracy = {}
    for split in ("valid", "test"):
        settings = EvalSettings(dataset=config.dataset, split=split, valid_fraction=config.valid_fraction,
                                split_seed=config.seed, data_dir=config.data_dir)  # fmt: skip
        images, labels, _ = eval_data(settings)
        accuracy[split] = measure_accuracy(net, images.to(memory_format=memory_format), labels, settings.batch_size)[0]
    return net, ScratchResult(
        index=arch.index, arch=str(arch), epochs=config.epochs, valid_accuracy=accuracy["valid"],
        test_accuracy=accuracy["test"], train_loss=loss_sum / max(1, seen), train_accuracy=100 * correct / max(1, seen),
        seconds=seconds,
    )  # fmt: skip
