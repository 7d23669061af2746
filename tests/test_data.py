"""Datasets: the shipped sample, splits, the benchmark's transforms, local folders, clear errors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from khnet import data
from khnet.data import load_dataset, make_loader
from khnet.errors import DataError


def test_sample_is_class_balanced_real_cifar10():
    train = load_dataset("sample", "train+valid")
    test = load_dataset("sample", "test")
    assert len(train) == 6000 and len(test) == 1000
    assert np.bincount(train.labels.numpy()).tolist() == [600] * 10
    assert np.bincount(test.labels.numpy()).tolist() == [100] * 10
    assert train.images.shape == (6000, 3, 32, 32) and train.images.dtype == torch.uint8
    mean = train.images.float().mean((0, 2, 3)) / 255  # close to CIFAR-10's published channel means
    assert torch.allclose(mean, torch.tensor([0.491, 0.482, 0.447]), atol=0.02)
    assert train.info.num_classes == 10 and train.info.benchmark == "cifar10" and "JPEG" in train.info.note


def test_valid_split_is_fixed_disjoint_and_complete():
    train, valid = load_dataset("sample", "train", seed=3), load_dataset("sample", "valid", seed=3)
    assert len(train) + len(valid) == 6000 and len(valid) == 600
    full = load_dataset("sample", "train+valid").images.flatten(1)
    key = lambda imgs: {bytes(row.numpy()) for row in imgs.flatten(1)}  # noqa: E731
    assert key(train.images).isdisjoint(key(valid.images))
    assert key(train.images) | key(valid.images) == {bytes(row.numpy()) for row in full}
    again = load_dataset("sample", "valid", seed=3)
    assert torch.equal(again.images, valid.images)
    assert not torch.equal(load_dataset("sample", "valid", seed=4).images, valid.images)


def test_transforms_normalise_and_augment():
    test = load_dataset("sample", "test")
    x, y = test[0]
    expected = (test.images[0].float() / 255 - torch.tensor(test.info.mean).view(3, 1, 1)) / torch.tensor(
        test.info.std
    ).view(3, 1, 1)
    assert torch.allclose(x, expected, atol=1e-5) and isinstance(y, int)
    train = load_dataset("sample", "train")
    assert train.augment and not test.augment
    torch.manual_seed(0)
    views = torch.stack([train[0][0] for _ in range(16)])
    assert views.shape == (16, 3, 32, 32) and views.std(0).mean() > 0.05  # crops/flips differ


def test_loader_batches():
    loader = make_loader(load_dataset("sample", "test"), batch_size=128, num_workers=0)
    x, y = next(iter(loader))
    assert x.shape == (128, 3, 32, 32) and y.shape == (128,) and x.dtype == torch.float32
    with pytest.raises(DataError, match="batch_size=0"):
        make_loader(load_dataset("sample", "test"), batch_size=0)


def test_image_folder(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 3), ("test", 2)):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            for k in range(n):
                Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(
                    tmp_path / split / cls / f"{k}.png"
                )
    train = load_dataset(f"imagefolder:{tmp_path}", "train+valid")
    test = load_dataset(f"imagefolder:{tmp_path}", "test")
    assert len(train) == 6 and len(test) == 4 and train.info.num_classes == 2
    assert train.images.shape[-2:] == (32, 32)  # resized on decode
    assert train.labels.tolist() == [0, 0, 0, 1, 1, 1]


def test_imagenet16_pickles(tmp_path):
    rng = np.random.default_rng(0)
    names = [f"train_data_batch_{k}" for k in range(1, 11)] + ["val_data"]
    for name in names:
        labels = [1, 120, 121, 500]  # only 1..120 belong to ImageNet16-120
        with (tmp_path / name).open("wb") as f:
            pickle.dump({"data": rng.integers(0, 255, (4, 768), dtype=np.uint8), "labels": labels}, f)
    train = load_dataset("imagenet16-120", "train+valid", root=tmp_path)
    assert len(train) == 20 and train.images.shape == (20, 3, 16, 16)
    assert sorted(set(train.labels.tolist())) == [0, 119] and train.info.resolution == 16 and train.pad == 2


def test_missing_data_gives_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("KHNET_OFFLINE", "1")
    with pytest.raises(DataError) as err:
        load_dataset("cifar10", "train", root=tmp_path)
    message = str(err.value)
    assert str(tmp_path) in message and "cifar-10-python.tar.gz" in message and "\n" not in message
    with pytest.raises(DataError, match="train_data_batch_1"):
        load_dataset("imagenet16-120", root=tmp_path)
    with pytest.raises(DataError, match="needs"):
        load_dataset(f"imagefolder:{tmp_path}")
    with pytest.raises(DataError, match="unknown dataset 'mnist'"):
        load_dataset("mnist")
    with pytest.raises(DataError, match="unknown split"):
        load_dataset("sample", "val")


def test_cifar_from_local_copy(tmp_path, monkeypatch):
    """A local torchvision-layout CIFAR-10 is read without any download."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
        with (folder / name).open("wb") as f:
            pickle.dump({"data": rng.integers(0, 255, (2, 3072), dtype=np.uint8), "labels": [1, 2]}, f)
    with (folder / "batches.meta").open("wb") as f:
        pickle.dump({"label_names": list(data.CIFAR10_CLASSES)}, f)
    import torchvision.datasets.cifar as tv_cifar

    monkeypatch.setenv("KHNET_OFFLINE", "1")
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *args: True)  # fake batches, other checksums
    monkeypatch.setattr(tv_cifar.CIFAR10, "_check_integrity", lambda self: True)
    train = load_dataset("cifar10", "train+valid", root=tmp_path)
    assert len(train) == 10 and train.info.benchmark == "cifar10"


def test_the_benchmarks_test_split_files_are_honoured(tmp_path, monkeypatch):
    """x-valid / x-test are the halves of the CIFAR-100 test set listed in the release's split file, compared
    with the benchmark's valid / test columns; without the file, a one-line error says where it goes."""
    import json

    import numpy as np

    import khnet.data as data
    from khnet.evaluate import benchmark_setting

    test_x = np.arange(10 * 4 * 4 * 3, dtype=np.uint8).reshape(10, 4, 4, 3)
    fake = (test_x, np.arange(10) % 5, test_x, np.arange(10), data.dataset_info("cifar100"))
    monkeypatch.setattr(data, "_read_source", lambda name, root, resolution: fake)
    monkeypatch.setattr(data, "_CACHE", {})
    with pytest.raises(data.DataUsageError, match=r"cifar100-test-split\.txt not found"):
        data.load_dataset("cifar100", "x-valid", root=tmp_path)
    split_file = tmp_path / "cifar100" / "cifar100-test-split.txt"
    split_file.parent.mkdir()
    split_file.write_text(json.dumps({"xvalid": ["int", [1, 3, 5, 7, 9]], "xtest": ["int", ["0", "2", "4", "6", "8"]]}))
    valid, test = (data.load_dataset("cifar100", s, root=tmp_path) for s in ("x-valid", "x-test"))
    assert valid.labels.tolist() == [1, 3, 5, 7, 9] and test.labels.tolist() == [0, 2, 4, 6, 8]
    assert benchmark_setting("cifar100", "x-valid") == ("cifar100", "valid")
    assert benchmark_setting("imagenet16-120", "x-test") == ("imagenet16-120", "test")
    with pytest.raises(data.DataUsageError, match="has none"):
        data.benchmark_test_split("cifar10", tmp_path)
    split_file.write_text("{}")
    with pytest.raises(data.DataError, match="not a NAS-Bench-201 test-split file"):
        data.benchmark_test_split("cifar100", tmp_path)


def test_augmented_order_is_fixed_by_its_generator():
    from khnet.data import AugmentedOrder

    train = load_dataset("sample", "train")
    order = torch.arange(40)
    first, again = (AugmentedOrder(train, order, torch.Generator().manual_seed(1)) for _ in range(2))
    other = AugmentedOrder(train, order, torch.Generator().manual_seed(2))
    images = torch.stack([first[k][0] for k in range(40)])
    assert torch.equal(images, torch.stack([again[k][0] for k in range(40)]))
    assert not torch.equal(images, torch.stack([other[k][0] for k in range(40)]))
    assert len({tuple(o) for o in first.offsets}) > 10 and 0 < sum(first.flips) < 40  # crops and flips vary
    plain = train.subset(np.arange(40), augment=False)
    assert torch.equal(train.augmented(7, 4, 4, False)[0], plain[7][0])  # offsets (pad, pad): the image itself
    assert torch.equal(train.augmented(7, 4, 4, True)[0], plain[7][0].flip(-1))
    shifted = train.augmented(7, 0, 0, False)[0]  # 4 rows and columns of zero padding (normalised) on top/left
    assert torch.equal(shifted[:, 4:, 4:], plain[7][0][:, :-4, :-4])
    unaugmented = AugmentedOrder(plain, torch.tensor([3, 1]), torch.Generator())
    assert torch.equal(unaugmented[0][0], plain[3][0]) and unaugmented[1][1] == plain[1][1]
