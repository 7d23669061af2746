"""Datasets with NAS-Bench-201's augmentation, normalisation and splits, and loaders sized for the machine.

Names accepted by ``load_dataset``:

- ``cifar10``, ``cifar100``: torchvision's python version, read from ``root`` (default ``$KHNET_DATA`` or
  ``~/.cache/khnet/data``) and downloaded there when missing and online.
- ``imagenet16-120``: the benchmark's pickled 16x16 batches (``train_data_batch_1..10``, ``val_data``)
  in ``root`` (or ``root/ImageNet16``); labels 1..120 of the 1000 classes.
- ``imagefolder:PATH``: ``PATH/train/<class>/*`` and ``PATH/test/<class>/*`` (e.g. the JPEG CIFAR-10 copy),
  decoded once into memory at ``resolution`` pixels; normalised with CIFAR-10's statistics.
- ``cifar10-jpeg``: the JPEG (quality 75) copy of all 60,000 CIFAR-10 images in ImageFolder layout, read from
  ``root/cifar10-jpeg/{train,test}/<class>/*.jpg`` (the archive ``cifar10-jpeg.tar.gz`` extracted into
  ``root``); the same images, order and splits as ``imagefolder:root/cifar10-jpeg``, under a name that does not
  depend on where the folder lies (the zoo's supernets are trained on it).
- ``sample``: 6,000 training and 1,000 test images of the JPEG CIFAR-10 copy (600 / 100 per class), shipped
  inside khnet; made by ``scripts/make_sample.py``. The embedded default for ``make run`` and the tests.

Splits: ``train`` (the training images minus a held-out validation part), ``valid`` (that part, carved
with a fixed seed; search selects on it, never on test), ``train+valid`` (all training images) and
``test``. Training splits are augmented as the benchmark does (random crop with padding, horizontal flip);
the others are only normalised.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from importlib import resources
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from khnet.errors import DataError, DataUsageError, require_choice

__all__ = [
    "SPLITS",
    "ArrayDataset",
    "AugmentedOrder",
    "DatasetInfo",
    "benchmark_test_split",
    "dataset_info",
    "default_data_root",
    "default_num_workers",
    "load_dataset",
    "make_loader",
]

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "train+valid", "test", "x-valid", "x-test")
# The benchmark's halves of the test set (its "valid" and "test" numbers for CIFAR-100 and ImageNet16-120), from
# the split files of the NAS-Bench-201 release (configs/nas-benchmark/*-test-split.txt), put beside the data.
TEST_SPLIT_FILES = {"cifar100": "cifar100-test-split.txt", "imagenet16-120": "imagenet-16-120-test-split.txt"}
_CIFAR10_STATS = ((125.3, 123.0, 113.9), (63.0, 62.1, 66.7))
_CIFAR100_STATS = ((129.3, 124.1, 112.4), (68.2, 65.4, 70.4))
_IMAGENET16_STATS = ((122.68, 116.66, 104.01), (63.22, 61.26, 65.09))
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip


@dataclass(frozen=True)
class DatasetInfo:
    """What a model and a report need to know about a dataset.

    Attributes:
        name: the name given to ``load_dataset``.
        num_classes: number of labels.
        resolution: image height = width in pixels.
        mean, std: per-channel normalisation in [0, 1] units.
        benchmark: the NAS-Bench-201 dataset whose accuracies results are compared with, or None.
        note: a caveat to print beside any comparison with the benchmark ('' if none).
    """

    name: str
    num_classes: int
    resolution: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    benchmark: str | None
    note: str = ""

    def input_spec(self) -> dict[str, Any]:
        """What a network trained on it expects: ``resolution`` (pixels), per-channel ``mean`` and ``std``."""
        return {"resolution": self.resolution, "mean": list(self.mean), "std": list(self.std)}


class ArrayDataset(Dataset):
    """Images held in memory as uint8 (N, H, W, 3), with the benchmark's augmentation on tensors.

    Args:
        images: uint8 array (N, H, W, 3).
        labels: int array (N,).
        info: normalisation and resolution.
        augment: random crop (padding resolution/8) and horizontal flip, as in NAS-Bench-201.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, info: DatasetInfo, augment: bool) -> None:
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise DataError(f"{info.name}: expected uint8 images (N, H, W, 3), got {images.dtype} {images.shape}")
        self.images = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)  # (N, 3, H, W)
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        self.info, self.augment = info, augment
        self.pad = info.resolution // 8  # 4 for 32x32, 2 for 16x16
        self.mean = torch.tensor(info.mean).view(3, 1, 1) * 255
        self.std = torch.tensor(info.std).view(3, 1, 1) * 255

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        """Image ``i`` (3, H, W), normalised, and its label; with ``augment``, cropped and flipped at random from
        torch's global generator (like torchvision's transforms). khnet's training loops draw the augmentation
        from an explicit generator instead (``AugmentedOrder``)."""
        if not self.augment:
            return self.augmented(i, self.pad, self.pad, False)
        top, left = torch.randint(0, 2 * self.pad + 1, (2,)).tolist()
        return self.augmented(i, top, left, bool(torch.rand(()) < 0.5))

    def augmented(self, i: int, top: int, left: int, flip: bool) -> tuple[torch.Tensor, int]:
        """Image ``i`` cropped at (``top``, ``left``) of its zero-padded copy (offsets 0..2*pad; pad, pad is the
        image itself), mirrored when ``flip``, normalised; and its label."""
        img = self.images[i].float()  # (3, H, W)
        if (top, left) != (self.pad, self.pad):
            h, w = img.shape[1:]
            img = torch.nn.functional.pad(img, (self.pad,) * 4)[:, top : top + h, left : left + w]
        if flip:
            img = img.flip(-1)
        return (img - self.mean) / self.std, int(self.labels[i])

    def subset(self, indices: np.ndarray, augment: bool) -> ArrayDataset:
        """A new dataset over ``indices`` sharing this one's memory layout."""
        out = ArrayDataset.__new__(ArrayDataset)
        out.__dict__.update(self.__dict__)
        out.images, out.labels, out.augment = self.images[indices], self.labels[indices], augment
        return out


class AugmentedOrder(Dataset):
    """The items of ``dataset`` in ``order``, each with its crop offsets and flip drawn up front from
    ``generator`` (when ``dataset.augment``): the augmented images depend on the generator alone, not on how
    many loader workers read them or on torch's global generator.

    Args:
        dataset: the images (an ``ArrayDataset``).
        order: indices into ``dataset`` (a permutation of an epoch, or any selection).
        generator: draws ``len(order)`` offset pairs, then ``len(order)`` flips.
    """

    def __init__(self, dataset: ArrayDataset, order: torch.Tensor, generator: torch.Generator) -> None:
        self.dataset, self.order = dataset, order.tolist()
        self.offsets: list[list[int]] | None = None
        self.flips: list[bool] = []
        if dataset.augment:
            n = len(self.order)
            self.offsets = torch.randint(0, 2 * dataset.pad + 1, (n, 2), generator=generator).tolist()
            self.flips = (torch.rand(n, generator=generator) < 0.5).tolist()

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, int]:
        if self.offsets is None:
            return self.dataset[self.order[k]]
        top, left = self.offsets[k]
        return self.dataset.augmented(self.order[k], top, left, self.flips[k])


# ---------------------------------------------------------------- sources: name -> (train, test, info)
Source = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, DatasetInfo]


def default_data_root() -> Path:
    """``$KHNET_DATA``, else ``~/.cache/khnet/data``."""
    return Path(os.environ.get("KHNET_DATA", Path.home() / ".cache" / "khnet" / "data")).expanduser()


def _offline() -> bool:
    return any(os.environ.get(k, "") not in ("", "0") for k in ("KHNET_OFFLINE", "HF_HUB_OFFLINE"))


def _torchvision_cifar(name: str, root: Path) -> Source:
    from torchvision import datasets

    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    folder = "cifar-10-batches-py" if name == "cifar10" else "cifar-100-python"
    archive = "cifar-10-python.tar.gz" if name == "cifar10" else "cifar-100-python.tar.gz"
    try:
        train, test = cls(str(root), train=True, download=False), cls(str(root), train=False, download=False)
    except RuntimeError:
        if _offline():
            raise DataError(_missing_cifar(name, root, folder, archive, "offline mode is set")) from None
        try:
            train = cls(str(root), train=True, download=True)
            test = cls(str(root), train=False, download=True)
        except Exception as err:  # no network, a proxy, a partial file: all end the same way
            raise DataError(_missing_cifar(name, root, folder, archive, f"download failed: {err}")) from None
    stats = _CIFAR10_STATS if name == "cifar10" else _CIFAR100_STATS
    info = DatasetInfo(name, 10 if name == "cifar10" else 100, 32, *_scaled(stats), benchmark=name)
    return train.data, np.asarray(train.targets), test.data, np.asarray(test.targets), info


def _missing_cifar(name: str, root: Path, folder: str, archive: str, why: str) -> str:
    return (
        f"{name} is not in {root / folder} ({why}); put {archive} from https://www.cs.toronto.edu/~kriz/cifar.html "
        f"(or its extracted folder) in {root}, or pass --data-dir / set KHNET_DATA"
    )


def _scaled(
    stats: tuple[tuple[float, ...], tuple[float, ...]],
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    return tuple(m / 255 for m in stats[0]), tuple(s / 255 for s in stats[1])


def _imagenet16(root: Path) -> Source:
    base = root / "ImageNet16" if (root / "ImageNet16").is_dir() else root
    files = [base / f"train_data_batch_{k}" for k in range(1, 11)] + [base / "val_data"]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise DataError(
            f"imagenet16-120 batches {', '.join(missing)} not found in {base}; put the benchmark's ImageNet16 "
            "pickles (train_data_batch_1..10, val_data) there, or pass --data-dir / set KHNET_DATA"
        )

    def read(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
        images, labels = [], []
        for path in paths:
            with path.open("rb") as f:
                entry = pickle.load(f, encoding="latin1")
            images.append(np.asarray(entry["data"], dtype=np.uint8))
            labels.append(np.asarray(entry["labels"], dtype=np.int64))
        x, y = np.concatenate(images), np.concatenate(labels)
        keep = (y >= 1) & (y <= 120)  # ImageNet16-120 = labels 1..120 of the 1000
        return x[keep].reshape(-1, 3, 16, 16).transpose(0, 2, 3, 1), y[keep] - 1

    train_x, train_y = read(files[:-1])
    test_x, test_y = read(files[-1:])
    info = DatasetInfo("imagenet16-120", 120, 16, *_scaled(_IMAGENET16_STATS), benchmark="imagenet16-120")
    return train_x, train_y, test_x, test_y, info


def _decode(data: bytes, resolution: int) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        img = img.convert("RGB")
        if img.size != (resolution, resolution):
            img = img.resize((resolution, resolution), Image.BILINEAR)
        return np.asarray(img, dtype=np.uint8)


_IMAGEFOLDER_NOTE = (
    "data: CIFAR-10 classes from an image folder (the JPEG q75 copy scores 2-3 points below the original "
    "CIFAR-10), compared with NAS-Bench-201's CIFAR-10 numbers"
)


def _image_folder(path: Path, resolution: int = 32) -> Source:
    if not (path / "train").is_dir() or not (path / "test").is_dir():
        raise DataError(
            f"imagefolder:{path} needs {path}/train/<class>/* and {path}/test/<class>/*; "
            "e.g. extract ../shared/data/cifar10-jpeg/cifar10-jpeg.tar.gz and pass imagefolder:<that folder>"
        )
    classes = sorted(d.name for d in (path / "train").iterdir() if d.is_dir())
    if not classes:
        raise DataError(f"imagefolder:{path}/train has no class folders")

    def read(split: str) -> tuple[np.ndarray, np.ndarray]:
        images, labels = [], []
        for label, cls in enumerate(classes):
            folder = path / split / cls
            if not folder.is_dir():
                raise DataError(f"imagefolder:{path}: class folder {folder} is missing (train has {cls!r})")
            for file in sorted(folder.iterdir()):
                if file.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp", ".webp"):
                    images.append(_decode(file.read_bytes(), resolution))
                    labels.append(label)
        if not images:
            raise DataError(f"imagefolder:{path}/{split} holds no images (.jpg, .jpeg, .png, .bmp, .webp)")
        return np.stack(images), np.asarray(labels)

    train_x, train_y = read("train")
    test_x, test_y = read("test")
    is_cifar10 = tuple(classes) == CIFAR10_CLASSES and resolution == 32
    info = DatasetInfo(
        f"imagefolder:{path}",
        len(classes),
        resolution,
        *_scaled(_CIFAR10_STATS),
        benchmark="cifar10" if is_cifar10 else None,
        note=_IMAGEFOLDER_NOTE if is_cifar10 else "custom image folder; no benchmark comparison",
    )
    return train_x, train_y, test_x, test_y, info


_JPEG_NOTE = (
    "data: the JPEG q75 copy of CIFAR-10 (50k training images; it scores 2-3 points below the original "
    "CIFAR-10), compared with NAS-Bench-201's CIFAR-10 numbers"
)


def _cifar10_jpeg(root: Path) -> Source:
    folder = root / "cifar10-jpeg"
    if not (folder / "train").is_dir() or not (folder / "test").is_dir():
        raise DataError(
            f"cifar10-jpeg is not in {folder} (it needs train/<class>/*.jpg and test/<class>/*.jpg); extract "
            f"cifar10-jpeg.tar.gz (e.g. ../shared/data/cifar10-jpeg/cifar10-jpeg.tar.gz) into {root}, "
            "or pass --data-dir / set KHNET_DATA to the folder that holds cifar10-jpeg/"
        )
    train_x, train_y, test_x, test_y, _ = _image_folder(folder, 32)
    return train_x, train_y, test_x, test_y, _CIFAR10_JPEG_INFO


def _sample() -> Source:
    with resources.files("khnet").joinpath("_data/cifar10_sample.npz").open("rb") as f:
        blob = np.load(f)
        arrays = {k: blob[k] for k in blob.files}

    def decode(split: str) -> np.ndarray:
        data, offsets = arrays[f"{split}_jpeg"].tobytes(), arrays[f"{split}_offsets"]
        return np.stack([_decode(data[a:b], 32) for a, b in pairwise(offsets)])

    info = DatasetInfo(
        "sample",
        10,
        32,
        *_scaled(_CIFAR10_STATS),
        benchmark="cifar10",
        note=_SAMPLE_NOTE,
    )
    return decode("train"), arrays["train_labels"], decode("test"), arrays["test_labels"], info


_SOURCES: dict[str, Callable[[Path], Source]] = {  # name -> reader given the data root
    "cifar10": partial(_torchvision_cifar, "cifar10"),
    "cifar10-jpeg": _cifar10_jpeg,
    "cifar100": partial(_torchvision_cifar, "cifar100"),
    "imagenet16-120": _imagenet16,
    "sample": lambda root: _sample(),  # shipped inside khnet: no root needed
}


def _read_source(name: str, root: Path, resolution: int) -> Source:
    if name.startswith("imagefolder:"):
        return _image_folder(Path(name.split(":", 1)[1]).expanduser(), resolution)
    require_choice("dataset", name, _SOURCES, DataUsageError, ", or imagefolder:PATH")
    return _SOURCES[name](root)


_CACHE: dict[tuple[str, str, int], Source] = {}

_SAMPLE_NOTE = (
    "data: the 7,000-image sample of the JPEG q75 CIFAR-10 copy shipped with khnet; NAS-Bench-201's "
    "CIFAR-10 numbers (50k original images, 200 epochs) are shown for orientation only"
)
_CIFAR10_JPEG_INFO = DatasetInfo("cifar10-jpeg", 10, 32, *_scaled(_CIFAR10_STATS), benchmark="cifar10", note=_JPEG_NOTE)
_KNOWN_INFO = {
    "cifar10": DatasetInfo("cifar10", 10, 32, *_scaled(_CIFAR10_STATS), benchmark="cifar10"),
    "cifar100": DatasetInfo("cifar100", 100, 32, *_scaled(_CIFAR100_STATS), benchmark="cifar100"),
    "imagenet16-120": DatasetInfo("imagenet16-120", 120, 16, *_scaled(_IMAGENET16_STATS), benchmark="imagenet16-120"),
    "cifar10-jpeg": _CIFAR10_JPEG_INFO,
    "sample": DatasetInfo("sample", 10, 32, *_scaled(_CIFAR10_STATS), benchmark="cifar10", note=_SAMPLE_NOTE),
}


def dataset_info(name: str, resolution: int = 32) -> DatasetInfo:
    """What ``load_dataset(name, ...).info`` would say, without reading any image (for reports of stored
    results on a machine that lacks the data). ``imagefolder:PATH`` reads only its class folder names when
    the folder exists, and is reported as a custom folder otherwise."""
    if name.startswith("imagefolder:"):
        path = Path(name.split(":", 1)[1]).expanduser()
        classes = sorted(d.name for d in (path / "train").iterdir() if d.is_dir()) if (path / "train").is_dir() else []
        if tuple(classes) == CIFAR10_CLASSES and resolution == 32:
            return DatasetInfo(name, 10, 32, *_scaled(_CIFAR10_STATS), benchmark="cifar10", note=_IMAGEFOLDER_NOTE)
        return DatasetInfo(name, len(classes), resolution, *_scaled(_CIFAR10_STATS), benchmark=None,
                           note="custom image folder; no benchmark comparison")  # fmt: skip
    require_choice("dataset", name, _SOURCES, DataUsageError, ", or imagefolder:PATH")
    return _KNOWN_INFO[name]


def load_dataset(
    name: str,
    split: str = "train",
    root: str | Path | None = None,
    valid_fraction: float = 0.1,
    seed: int = 0,
    augment: bool | None = None,
    resolution: int = 32,
) -> ArrayDataset:
    """One split of a dataset, held in memory, with the benchmark's transforms.

    Args:
        name: ``cifar10``, ``cifar100``, ``imagenet16-120``, ``cifar10-jpeg``, ``sample`` or ``imagefolder:PATH``.
        split: ``train``, ``valid`` (held out of the training set), ``train+valid``, ``test``, or for CIFAR-100 and
            ImageNet16-120 ``x-valid`` / ``x-test``: the benchmark's halves of the test set (``benchmark_test_split``).
        root: where datasets live or are downloaded to (default ``default_data_root()``).
        valid_fraction: share of the training images held out as ``valid`` (a seeded, class-blind draw).
        seed: seed of that draw; the same seed always gives the same split.
        augment: random crop + flip; default True for training splits only.
        resolution: pixels of ``imagefolder`` images (others have their own).

    Returns:
        An ``ArrayDataset``; ``.info`` says classes, resolution and any caveat against the benchmark.
    """
    require_choice("split", split, SPLITS, DataUsageError)
    if not 0.0 <= valid_fraction < 1.0:
        raise DataUsageError(f"valid_fraction={valid_fraction} must be in [0, 1)")
    root = Path(root).expanduser() if root is not None else default_data_root()
    key = (name, str(root), resolution)
    if key not in _CACHE:
        _CACHE[key] = _read_source(name, root, resolution)
    train_x, train_y, test_x, test_y, info = _CACHE[key]
    augment = split in ("train", "train+valid") if augment is None else augment
    if split == "test":
        return ArrayDataset(test_x, test_y, info, augment)
    if split in ("x-valid", "x-test"):
        indices = benchmark_test_split(name, root)[split]
        if len(indices) and (indices.min() < 0 or indices.max() >= len(test_y)):
            raise DataError(f"the {split} indices of {name}'s split file exceed its {len(test_y)} test images")
        return ArrayDataset(test_x, test_y, info, augment).subset(indices, augment)
    full = ArrayDataset(train_x, train_y, info, augment)
    if split == "train+valid":
        return full
    order = np.random.default_rng(seed).permutation(len(train_y))
    n_valid = round(valid_fraction * len(train_y))
    if split == "valid" and n_valid == 0:
        raise DataUsageError("the valid split is empty: set valid_fraction > 0")
    chosen = np.sort(order[:n_valid] if split == "valid" else order[n_valid:])
    return full.subset(chosen, augment)


def benchmark_test_split(name: str, root: str | Path | None = None) -> dict[str, np.ndarray]:
    """The benchmark's division of the test set of ``name`` (``cifar100``, ``imagenet16-120``) into ``x-valid``
    and ``x-test`` (indices into the test split), read from the release's split file (JSON of
    ``{"xvalid": ["int", [...]], "xtest": ["int", [...]]}``) in ``root`` or ``root/name``.

    Raises:
        DataUsageError: a dataset the benchmark does not split, or the file is absent (says where to put it).
        DataError: the file is not in that form.
    """
    import json

    if name not in TEST_SPLIT_FILES:
        raise DataUsageError(
            f"x-valid / x-test are the benchmark's halves of the CIFAR-100 and ImageNet16-120 test sets; {name!r} "
            "has none (use valid or test)"
        )
    root = Path(root).expanduser() if root is not None else default_data_root()
    filename = TEST_SPLIT_FILES[name]
    for path in (root / filename, root / name / filename):
        if path.is_file():
            break
    else:
        raise DataUsageError(
            f"{filename} not found in {root} or {root / name}: copy it there from the NAS-Bench-201 release "
            "(configs/nas-benchmark/ of the AutoDL-Projects repository)"
        )
    try:
        data = json.loads(path.read_text())
        return {
            split: np.asarray(data[key][1], dtype=np.int64)
            for split, key in (("x-valid", "xvalid"), ("x-test", "xtest"))
        }
    except (json.JSONDecodeError, KeyError, IndexError, TypeError, ValueError) as err:
        raise DataError(f"{path} is not a NAS-Bench-201 test-split file ({type(err).__name__}: {err})") from None


def default_num_workers() -> int:
    """Loader worker processes: one core is left for the training loop (0 on a 1-2 core machine)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 0 if cores <= 2 else min(8, cores - 1)


def make_loader(
    dataset: Dataset,
    batch_size: int = 256,
    shuffle: bool = False,
    seed: int = 0,
    num_workers: int | None = None,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader sized for this machine: seeded shuffling, pinned memory only when CUDA is present."""
    if batch_size < 1:
        raise DataUsageError(f"batch_size={batch_size} must be at least 1")
    workers = default_num_workers() if num_workers is None else num_workers
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        drop_last=drop_last,
        persistent_workers=workers > 0,
    )
