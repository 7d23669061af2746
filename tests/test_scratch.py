"""Training one arch from scratch: the baseline of the reproduction study."""

from __future__ import annotations

import math

import pytest

from khnet.errors import KhnetError
from khnet.scratch import train_from_scratch
from khnet.train import TrainConfig

ALL_3X3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"


def quick(**kw) -> TrainConfig:
    base = {"epochs": 3, "batch_size": 32, "max_steps_per_epoch": 8, "lr": 0.05, "device": "cpu"}
    return TrainConfig(**{**base, **kw})


def test_learns_and_is_deterministic():
    first = train_from_scratch(ALL_3X3, quick(), channels=8, cells_per_stage=1)
    assert first.index == 1462 and first.epochs == 3
    assert first.train_loss < math.log(10)  # below chance after 24 steps
    assert 0 <= first.valid_accuracy <= 100 and 0 <= first.test_accuracy <= 100
    again = train_from_scratch(1462, quick(), channels=8, cells_per_stage=1)
    assert (again.valid_accuracy, again.test_accuracy, again.train_loss) == (
        first.valid_accuracy,
        first.test_accuracy,
        first.train_loss,
    )
    other_seed = train_from_scratch(1462, quick(seed=1), channels=8, cells_per_stage=1)
    assert other_seed.train_loss != first.train_loss


def test_batch_larger_than_the_data_is_a_clear_error():
    with pytest.raises(KhnetError, match="batch_size=100000"):
        train_from_scratch(0, quick(batch_size=100_000), channels=4, cells_per_stage=1)
