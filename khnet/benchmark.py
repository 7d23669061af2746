"""NAS-Bench-201 ground truth: the table khnet ships, or the official benchmark file when you have it.

The shipped table (``khnet/_data/nb201.csv.xz``, about 0.5 MB) holds, for each of the 15,625 archs, the
benchmark's accuracies (percent, mean over its 1-3 seeds) after the 200-epoch and the 12-epoch schedules,
the published FLOPs/params and the isomorphism class. It was built by ``scripts/make_groundtruth.py``
from public dumps of the official API; see ``khnet/_data/NB201-LICENSE.txt`` (MIT, (c) Xuanyi Dong) and
cite NAS-Bench-201 (Dong & Yang, ICLR 2020) when you use it.

Settings and splits, as the benchmark names them:

==================  ==========================  ==============================================
dataset             splits                      trained on / evaluated on
==================  ==========================  ==============================================
``cifar10``         ``test``                    train+valid (50k) / the 10k test set
``cifar10-valid``   ``valid``                   25k of train / the other 25k
``cifar100``        ``valid test ori-test``     train / 5k + 5k halves of the test set, and all 10k
``imagenet16-120``  ``valid test ori-test``     train / 3k + 3k halves of the test set, and all 6k
==================  ==========================  ==============================================
"""

from __future__ import annotations

import csv
import io
import lzma
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import ClassVar, Protocol

from khnet.errors import GroundTruthError
from khnet.space import NUM_ARCHS, Arch, ArchLike

__all__ = [
    "BASELINE",
    "SPLITS",
    "GroundTruth",
    "OfficialGroundTruth",
    "ShippedGroundTruth",
    "describe_arch",
    "load_ground_truth",
    "normalize_dataset",
]

SPLITS: dict[str, tuple[str, ...]] = {
    "cifar10": ("test",),
    "cifar10-valid": ("valid",),
    "cifar100": ("valid", "test", "ori-test"),
    "imagenet16-120": ("valid", "test", "ori-test"),
}
_ALIASES = {
    "cifar-10": "cifar10",
    "cifar-100": "cifar100",
    "imagenet16": "imagenet16-120",
    "imagenet16_120": "imagenet16-120",
    "imagenet-16-120": "imagenet16-120",
}
_SPLIT_ALIASES = {"x-valid": "valid", "x-test": "test", "ori_test": "ori-test"}
_COLUMN_PREFIX = {
    "cifar10": "cifar10",
    "cifar10-valid": "cifar10_valid",
    "cifar100": "cifar100",
    "imagenet16-120": "imagenet16",
}
_SCHEDULES = (200, 12)

# Mean and max test accuracy (percent) over all 15,625 archs trained from scratch (the paper's Table 1).
BASELINE: dict[str, dict[str, float]] = {
    "cifar10": {"mean": 87.06, "max": 94.37},
    "cifar100": {"mean": 61.41, "max": 73.51},
}


def normalize_dataset(dataset: str) -> str:
    """The benchmark's name for ``dataset`` (``CIFAR-10`` -> ``cifar10``), or a clear error."""
    name = _ALIASES.get(dataset.strip().lower(), dataset.strip().lower())
    if name not in SPLITS:
        raise GroundTruthError(f"unknown benchmark dataset {dataset!r}; choose one of: " + ", ".join(SPLITS))
    return name


def _normalize(dataset: str, split: str | None, epochs: int) -> tuple[str, str]:
    name = normalize_dataset(dataset)
    split = SPLITS[name][0] if split is None else _SPLIT_ALIASES.get(split.lower(), split.lower())
    if split not in SPLITS[name]:
        raise GroundTruthError(f"dataset {name!r} has no split {split!r}; choose one of: " + ", ".join(SPLITS[name]))
    if epochs not in _SCHEDULES:
        raise GroundTruthError(f"schedule of {epochs} epochs is not in the benchmark; use 200 or 12")
    return name, split


class GroundTruth(Protocol):
    """What every ground-truth source answers."""

    source: str

    def accuracy(self, arch: ArchLike, dataset: str = "cifar10", split: str | None = None, epochs: int = 200) -> float:
        """Accuracy in percent of ``arch`` trained from scratch by the benchmark."""
        ...


@dataclass(frozen=True)
class ShippedGroundTruth:
    """The NAS-Bench-201 table shipped inside khnet (no download, about 0.5 MB)."""

    columns: dict[str, tuple[float, ...]]
    iso_class: tuple[int, ...]
    source: str = "NAS-Bench-201 table shipped with khnet (mean over the benchmark's seeds)"

    @classmethod
    @cache
    def load(cls) -> ShippedGroundTruth:
        """Read the shipped table once; later calls return the same object."""
        blob = resources.files("khnet").joinpath("_data/nb201.csv.xz").read_bytes()
        reader = csv.reader(io.StringIO(lzma.decompress(blob).decode()))
        header = next(reader)
        rows = list(reader)
        if len(rows) != NUM_ARCHS:  # pragma: no cover - a broken install
            raise RuntimeError("khnet/_data/nb201.csv.xz is damaged; reinstall khnet")
        values = list(zip(*rows, strict=True))
        columns = {name: tuple(map(float, col)) for name, col in zip(header[3:], values[3:], strict=True)}
        return cls(columns=columns, iso_class=tuple(map(int, values[2])))

    def accuracy(self, arch: ArchLike, dataset: str = "cifar10", split: str | None = None, epochs: int = 200) -> float:
        """Accuracy in percent (mean over seeds) of ``arch`` under the benchmark's setting ``dataset``.

        Args:
            arch: an ``Arch``, arch string or benchmark index.
            dataset: ``cifar10``, ``cifar10-valid``, ``cifar100`` or ``imagenet16-120``.
            split: one of ``SPLITS[dataset]``; default the first (``test`` for cifar10, ``valid`` otherwise).
            epochs: 200 (the full schedule) or 12 (the short one).
        """
        name, split = _normalize(dataset, split, epochs)
        index = Arch.coerce(arch).index
        if split == "ori-test":  # the mean of the two equal halves of the test set
            return (self.accuracy(index, name, "valid", epochs) + self.accuracy(index, name, "test", epochs)) / 2
        column = f"{_COLUMN_PREFIX[name]}_{split}" + ("_12ep" if epochs == 12 else "")
        return self.columns[column][index]

    def all_accuracies(self, dataset: str = "cifar10", split: str | None = None, epochs: int = 200) -> list[float]:
        """Accuracies (percent) of all 15,625 archs in index order."""
        return [self.accuracy(i, dataset, split, epochs) for i in range(NUM_ARCHS)]

    def published_cost(self, arch: ArchLike, dataset: str = "cifar10") -> tuple[float, float]:
        """The benchmark's recorded (MFLOPs, M params); for 204 archs the FLOPs are an average over
        isomorphic twins, so prefer ``Arch.cost``."""
        suffix = {"cifar10": "c10", "cifar10-valid": "c10", "cifar100": "c100", "imagenet16-120": "in16"}
        key = suffix[normalize_dataset(dataset)]
        index = Arch.coerce(arch).index
        return self.columns[f"flops_{key}_m"][index], self.columns[f"params_{key}_mb"][index]


class OfficialGroundTruth:
    """The benchmark's own files, read with the authors' API: NAS-Bench-201 (``NAS-Bench-201-v1_*.pth`` with
    ``nas_201_api``) or NATS-Bench's topology space, the same 15,625 archs and indices (a ``NATS-tss-v1_*``
    file or folder, read lazily with ``nats_bench.create(path, "tss", fast_mode=True)``).

    Loads several GB into memory for the .pth file; the shipped table answers the same questions without it.
    Install the APIs with ``pip install 'khnet[benchmark]'``.
    """

    _KEYS: ClassVar[dict[str, str]] = {
        "valid": "valid-accuracy",
        "test": "test-accuracy",
        "ori-test": "valtest-accuracy",
    }
    # the API's own dataset names (nas_201_api/api_utils.py: 'cifar10-valid', 'cifar10', 'cifar100', 'ImageNet16-120')
    _API_NAMES: ClassVar[dict[str, str]] = {"imagenet16-120": "ImageNet16-120"}

    def __init__(self, path: str | Path, api: object | None = None) -> None:
        path = Path(path)
        nats = path.is_dir() or path.name.startswith("NATS-tss")
        if api is None:
            if not path.exists():
                raise GroundTruthError(
                    f"benchmark file {path} not found; pass the path of NAS-Bench-201-v1_*.pth or of a "
                    "NATS-tss-v1_* file or folder, or omit it to use the table shipped with khnet"
                )
            api = _nats_api(path) if nats else _nb201_api(path)
        self.api = api
        kind = "NATS-Bench topology space" if nats else "NAS-Bench-201"
        self.source = f"official {kind} file {path.name} (mean over seeds)"

    def accuracy(self, arch: ArchLike, dataset: str = "cifar10", split: str | None = None, epochs: int = 200) -> float:
        """Accuracy in percent, averaged over the benchmark's seeds (same arguments as the shipped table)."""
        name, split = _normalize(dataset, split, epochs)
        if name == "cifar10" and split == "test":
            key = "test-accuracy"  # get_more_info reports cifar10's ori-test as test
        elif name == "cifar10-valid":
            key = "valid-accuracy"
        else:
            key = self._KEYS[split]
        api_name = self._API_NAMES.get(name, name)
        info = self.api.get_more_info(Arch.coerce(arch).index, api_name, hp=str(epochs), is_random=False)
        return float(info[key])


def _nb201_api(path: Path) -> object:
    try:
        from nas_201_api import NASBench201API  # several GB; only when asked for
    except ImportError:
        raise GroundTruthError(
            "reading the official benchmark file needs nas_201_api: pip install 'khnet[benchmark]'"
        ) from None
    return NASBench201API(str(path), verbose=False)


def _nats_api(path: Path) -> object:
    try:
        import nats_bench
    except ImportError:
        raise GroundTruthError("reading NATS-Bench files needs nats_bench: pip install 'khnet[benchmark]'") from None
    return nats_bench.create(str(path), "tss", fast_mode=True, verbose=False)


def load_ground_truth(path: str | Path | None = None) -> GroundTruth:
    """The official benchmark file at ``path`` when given, else the table shipped with khnet."""
    return ShippedGroundTruth.load() if path is None else OfficialGroundTruth(path)


def describe_arch(
    arch: ArchLike, ground_truth: GroundTruth | None = None, datasets: Sequence[str] | None = None
) -> dict:
    """Everything khnet knows about one arch, as plain JSON-ready values.

    Returns:
        ``arch`` (canonical string), ``index``, ``ops``, ``unique_key``, ``iso_class`` (the smallest index
        of its isomorphism class), ``iso_members`` (all indices of that class), ``cost`` (per dataset:
        ``mflops``, ``mparams`` in the benchmark's convention) and ``accuracy`` (per dataset and split:
        percent after 200 and 12 epochs; only ``datasets`` when given), plus ``source`` of the accuracies.
    """
    from khnet.space import isomorphism_classes

    arch = Arch.coerce(arch)
    gt = ground_truth if ground_truth is not None else ShippedGroundTruth.load()
    wanted = None if datasets is None else {normalize_dataset(d) for d in datasets}  # an official file: fewer reads
    members = isomorphism_classes()[arch.unique_key]
    shapes = {"cifar10": (10, 32), "cifar100": (100, 32), "imagenet16-120": (120, 16)}
    accuracy = {
        f"{dataset}/{split}": {
            f"{epochs}ep": round(gt.accuracy(arch, dataset, split, epochs), 4) for epochs in (200, 12)
        }
        for dataset, splits in SPLITS.items()
        if wanted is None or dataset in wanted
        for split in splits
    }
    return {
        "arch": str(arch),
        "index": arch.index,
        "ops": list(arch.ops),
        "unique_key": arch.unique_key,
        "iso_class": members[0],
        "iso_members": list(members),
        "cost": {
            name: {"mflops": round(c.mflops, 5), "mparams": round(c.mparams, 6)}
            for name, (classes, res) in shapes.items()
            for c in [arch.cost(num_classes=classes, resolution=res)]
        },
        "accuracy": accuracy,
        "source": gt.source,
    }
