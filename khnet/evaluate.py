"""Evaluate subnets straight from a supernet: bake, recalibrate BatchNorm, test; compare with the benchmark.

``evaluate_archs(supernet, archs, settings)`` yields one ``EvalRecord`` per requested arch. Isomorphic archs
(the benchmark's ``unique_key``) share one evaluation: the class's smallest index is evaluated and its
accuracy given to every member. Results are appended, one fsynced CSV line each, to
``eval-<supernet hash>.csv`` in the results directory as they are produced; a later call with the same
settings reuses them, so a killed evaluation resumes where it stopped with nothing lost or duplicated.
Under ``torchrun`` each rank evaluates its share of the classes into its own file; readers merge them.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from khnet.batchnorm import fold_bn, recalibrate_bn
from khnet.benchmark import BASELINE, ShippedGroundTruth
from khnet.config import EvalSettings
from khnet.data import ArrayDataset, dataset_info, load_dataset
from khnet.distributed import init_from_env, is_main_process
from khnet.errors import KhnetError, UsageError
from khnet.files import SUMMARY_FILE, state_hash, write_json
from khnet.metrics import kendall_tau, spearman_rho, top_k_overlap
from khnet.results import ResultsLock, ResultsWriter, read_result_rows, read_results, write_results_table
from khnet.space import Arch, isomorphism_classes, stratified_sample
from khnet.stacked import StackedNets

if TYPE_CHECKING:
    from khnet.supernet import SuperNet

__all__ = [
    "EvalRecord",
    "EvalSettings",
    "benchmark_setting",
    "calibration_images",
    "eval_data",
    "evaluate_archs",
    "evaluate_subnet",
    "evaluate_subnets",
    "evaluate_supernet",
    "measure_accuracy",
    "read_result_rows",
    "read_results",
    "recalibrate_bn",
    "stratified_sample",
    "summarize",
    "write_results_table",
]

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- settings, data, benchmark matching
def _normalised(dataset: ArrayDataset) -> torch.Tensor:
    images = dataset.images.float()
    return (images - dataset.mean) / dataset.std  # (N, 3, H, W)


def calibration_images(settings: EvalSettings) -> torch.Tensor:
    """The fixed, seeded, un-augmented recalibration subset of the training split (normalised)."""
    train = load_dataset(
        settings.dataset, "train", root=settings.data_dir, valid_fraction=settings.valid_fraction,
        seed=settings.split_seed, augment=False,
    )  # fmt: skip
    if settings.calib_images > len(train):
        raise UsageError(f"calib_images={settings.calib_images} exceeds the {len(train)} training images")
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(settings.calib_seed))
    return _normalised(train.subset(order[: settings.calib_images].numpy(), augment=False))


def eval_data(settings: EvalSettings) -> tuple[torch.Tensor, torch.Tensor, ArrayDataset]:
    """The (normalised) images, labels and dataset of the split ``settings`` evaluate on."""
    if settings.split not in ("valid", "test", "x-valid", "x-test"):
        raise UsageError(
            f"split {settings.split!r}: evaluate on valid (to select) or test (to report), or x-valid / x-test (the "
            "benchmark's halves of the CIFAR-100 and ImageNet16-120 test sets)"
        )
    data = load_dataset(
        settings.dataset, settings.split, root=settings.data_dir, valid_fraction=settings.valid_fraction,
        seed=settings.split_seed, augment=False,
    )  # fmt: skip
    if settings.test_images is not None and settings.test_images < len(data):
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(settings.calib_seed + 1))
        data = data.subset(order[: settings.test_images].sort().values.numpy(), augment=False)
    return _normalised(data), data.labels.clone(), data


_BENCHMARK_SPLIT = {
    ("cifar10", "test"): ("cifar10", "test"),
    ("cifar10", "valid"): ("cifar10-valid", "valid"),
    ("cifar100", "test"): ("cifar100", "ori-test"),
    ("cifar100", "valid"): ("cifar100", "valid"),
    ("imagenet16-120", "test"): ("imagenet16-120", "ori-test"),
    ("imagenet16-120", "valid"): ("imagenet16-120", "valid"),
    # the benchmark's own halves of the test set: the very images of its valid / test numbers
    ("cifar100", "x-valid"): ("cifar100", "valid"),
    ("cifar100", "x-test"): ("cifar100", "test"),
    ("imagenet16-120", "x-valid"): ("imagenet16-120", "valid"),
    ("imagenet16-120", "x-test"): ("imagenet16-120", "test"),
}


def benchmark_setting(benchmark: str | None, split: str) -> tuple[str, str] | None:
    """The benchmark (dataset, split) whose from-scratch accuracies our (dataset, split) is compared with.

    Our ``valid`` is a held-out part of the training set, compared with the benchmark's validation numbers
    (``cifar10-valid`` for CIFAR-10; for CIFAR-100 and ImageNet16-120 those were measured on half of the test
    set, so ``x-valid``, that same half read from the benchmark's split file, is the exact counterpart);
    ``test`` with its test numbers (CIFAR-100 and ImageNet16-120: the whole test set, ``ori-test``; ``x-test``
    with the other half).
    """
    return _BENCHMARK_SPLIT.get((benchmark, split)) if benchmark else None


# ---------------------------------------------------------------- records and the results file
@dataclass
class EvalRecord:
    """One arch's result. Accuracy in percent, loss per image, costs in MFLOPs / M params, seconds of the
    evaluation that produced it (shared by the members of an isomorphism class)."""

    index: int
    arch: str
    iso_class: int
    accuracy: float
    loss: float
    mflops: float
    mparams: float
    benchmark_accuracy: float | None
    seconds: float
    reused: bool

    def to_dict(self) -> dict[str, Any]:
        """Plain values (e.g. for ``pandas.DataFrame([r.to_dict() for r in records])``)."""
        return asdict(self)


# ---------------------------------------------------------------- evaluation
@torch.inference_mode()
def measure_accuracy(
    net: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int
) -> tuple[float, float]:
    """Accuracy (percent) and mean cross-entropy of ``net`` (as it is: set eval mode first) on ``images``."""
    device = next(net.parameters()).device
    correct, loss = 0, 0.0
    for i in range(0, len(images), batch_size):
        x, y = images[i : i + batch_size].to(device), labels[i : i + batch_size].to(device)
        logits = net(x)
        correct += (logits.argmax(-1) == y).sum().item()
        loss += nn.functional.cross_entropy(logits.float(), y, reduction="sum").item()
    return 100.0 * correct / len(images), loss / len(images)


def evaluate_subnet(
    supernet: SuperNet,
    arch: Arch,
    calib: torch.Tensor,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int = 512,
) -> tuple[float, float]:
    """Accuracy (percent) and mean cross-entropy of one subnet of ``supernet`` on ``images``: its kernels
    baked into an ``NB201Net``, BatchNorms recalibrated on all of ``calib`` (one batch), then folded into the
    convs for the test pass (the same outputs to 1e-5, a 5-20% faster pass). The subnet runs in the memory
    format of ``calib`` (channels_last is faster on CPUs and GPUs)."""
    channels_last = calib.dim() == 4 and calib.is_contiguous(memory_format=torch.channels_last)
    net = supernet.subnet(arch).to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    recalibrate_bn(net, calib, len(calib))
    return measure_accuracy(fold_bn(net.eval()), images, labels, batch_size)


def evaluate_subnets(
    supernet: SuperNet,
    archs: Sequence[Arch],
    calib: torch.Tensor,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int = 512,
) -> list[tuple[float, float]]:
    """``evaluate_subnet`` for several archs at once: their baked networks stacked side by side
    (``khnet.stacked.StackedNets``, grouped convolutions), recalibrated together on ``calib`` and tested in one
    pass per batch. Each network's BatchNorm statistics and outputs are its own, so the results equal
    ``evaluate_subnet`` one by one up to float rounding. Returns (accuracy %, mean loss) per arch, in order."""
    channels_last = calib.dim() == 4 and calib.is_contiguous(memory_format=torch.channels_last)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    stacked = StackedNets([supernet.subnet(a) for a in archs]).to(memory_format=memory_format)
    recalibrate_bn(stacked, calib, len(calib))
    stacked.eval()
    device = next(stacked.parameters()).device
    correct = torch.zeros(stacked.G, dtype=torch.long, device=device)
    loss = torch.zeros(stacked.G, dtype=torch.float64, device=device)
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            x, y = images[i : i + batch_size].to(device), labels[i : i + batch_size].to(device)
            logits = stacked(x).float()  # (B, G, classes)
            correct += (logits.argmax(-1) == y[:, None]).sum(0)
            targets = y[:, None].expand(-1, stacked.G)
            loss += F.cross_entropy(logits.transpose(1, 2), targets, reduction="none").sum(0).double()
    return [(100.0 * c / len(images), v / len(images)) for c, v in zip(correct.tolist(), loss.tolist(), strict=True)]


def evaluate_archs(
    supernet: SuperNet,
    archs: Sequence[Arch],
    settings: EvalSettings | None = None,
    results_dir: str | Path | None = None,
    *,
    ground_truth: ShippedGroundTruth | None = None,
    channels_last: bool = True,
    model_hash: str | None = None,
    shipped_results: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    subnets_per_pass: int = 1,
) -> Iterator[EvalRecord]:
    """Evaluate ``archs`` from ``supernet`` (bake, recalibrate BN, test), one record per arch, in order.

    Args:
        supernet: a ``SuperNet`` (on the device to evaluate on).
        archs: ``Arch`` values (``Arch.coerce`` makes them from strings or indices); duplicates and isomorphic
            twins are evaluated once.
        settings: data, split and recalibration settings.
        results_dir: where results are stored and reused (None: no file).
        ground_truth: the benchmark table for ``benchmark_accuracy`` (default: the shipped one).
        channels_last: run the subnets in NHWC (faster on this CPU and on GPUs; same results up to rounding).
        model_hash: ``state_hash`` of the supernet when the caller already has it (repeated calls on one
            unchanged supernet, as in search); computed otherwise.
        shipped_results: a read-only folder of stored results (a zoo entry's table), consulted before
            ``results_dir``; nothing is written there.
        progress: called as ``progress(done, total)`` after each subnet this process evaluates (stored results
            are not counted); records are yielded once all are evaluated.
        subnets_per_pass: evaluate this many subnets together (``evaluate_subnets``; same results up to float
            rounding). 1 is the default because stacking was measured slower on the CPU at proxy and full size
            (docs/performance.md); on a GPU, where small subnets are launch-bound, try more.
    """
    import torch.distributed as dist

    if subnets_per_pass < 1:
        raise UsageError(f"subnets_per_pass={subnets_per_pass}: give 1 or more")

    settings = settings or EvalSettings()
    gt = ground_truth or ShippedGroundTruth.load()
    param = next(supernet.parameters(), None)
    rank, world = init_from_env(param.device if param is not None else torch.device("cpu"))
    model_hash = model_hash or state_hash(supernet.state_dict())
    members = isomorphism_classes()
    rep_of = {a: members[a.unique_key][0] for a in archs}
    wanted = list(dict.fromkeys(rep_of[a] for a in archs))  # in the order asked for

    stores = [p for p in (shipped_results, results_dir) if p is not None]
    done = read_results(stores, model_hash, settings) if stores else {}
    todo = [c for c in wanted if c not in done]
    lock = None
    if todo and results_dir is not None:  # one writer per results file; a second eval waits, then reuses
        lock = ResultsLock(Path(results_dir), model_hash, rank)
        done = read_results(stores, model_hash, settings)
        todo = [c for c in wanted if c not in done]
    mine = todo[rank::world]
    was_training = supernet.training
    supernet.eval()
    try:
        writer = ResultsWriter(Path(results_dir), model_hash, rank) if results_dir is not None and mine else None
        fresh = _evaluate_classes(supernet, mine, settings, writer, channels_last, subnets_per_pass, progress)
    finally:
        supernet.train(was_training)
        if lock is not None:
            lock.release()
    if world > 1:  # everyone gets everyone's results
        gathered: list[dict[int, dict[str, float]]] = [{} for _ in range(world)]
        dist.all_gather_object(gathered, fresh)
        for part in gathered:
            fresh.update(part)
    done.update(fresh)
    log.info("evaluated %d classes, reused %d", len(mine), len(wanted) - len(todo))

    yield from _records(supernet, archs, rep_of, done, fresh, settings, gt)


def _evaluate_classes(
    supernet: SuperNet,
    classes: Sequence[int],
    settings: EvalSettings,
    writer: ResultsWriter | None,
    channels_last: bool,
    group: int,
    progress: Callable[[int, int], None] | None,
) -> dict[int, dict[str, float]]:
    """Evaluate ``classes`` (representative indices), ``group`` at a time; each result is stored as it comes."""
    fresh: dict[int, dict[str, float]] = {}
    if not classes:
        return fresh
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    calib = calibration_images(settings).contiguous(memory_format=memory_format)
    images, labels, _ = eval_data(settings)
    images = images.contiguous(memory_format=memory_format)
    for first in range(0, len(classes), group):
        chunk = classes[first : first + group]
        archs = [Arch.from_index(cls) for cls in chunk]
        start = time.perf_counter()
        if len(chunk) == 1:
            results = [evaluate_subnet(supernet, archs[0], calib, images, labels, settings.batch_size)]
        else:
            results = evaluate_subnets(supernet, archs, calib, images, labels, settings.batch_size)
        seconds = (time.perf_counter() - start) / len(chunk)
        for cls, (accuracy, loss) in zip(chunk, results, strict=True):
            result = fresh[cls] = {"accuracy": accuracy, "loss": loss, "seconds": seconds}
            if writer is not None:
                stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
                writer.append({"settings": settings.key(), "iso_class": cls, **result, "images": len(labels),
                               "calib_images": settings.calib_images, "time": stamp})  # fmt: skip
        if progress is not None:
            progress(first + len(chunk), len(classes))
    return fresh


def _records(supernet, archs, rep_of, done, fresh, settings, gt) -> Iterator[EvalRecord]:
    """One record per requested arch, with its costs at the supernet's shape and the benchmark's accuracy."""
    info = dataset_info(settings.dataset)  # no images read: stored results need no data
    bench = benchmark_setting(info.benchmark, settings.split)
    num_classes, resolution = supernet.config.num_classes, info.resolution  # the network as it is evaluated
    for arch in archs:
        cls = rep_of[arch]
        result = done[cls]
        cost = arch.cost(num_classes=num_classes, resolution=resolution, C=supernet.config.channels,
                         N=supernet.config.cells_per_stage)  # fmt: skip
        yield EvalRecord(
            index=arch.index, arch=str(arch), iso_class=cls, accuracy=result["accuracy"], loss=result["loss"],
            mflops=cost.mflops, mparams=cost.mparams,
            benchmark_accuracy=gt.accuracy(arch, *bench) if bench else None,
            seconds=result["seconds"], reused=cls not in fresh,
        )  # fmt: skip


# ---------------------------------------------------------------- summary
def summarize(records: Sequence[EvalRecord], note: str = "", dataset: str | None = None) -> dict[str, Any]:
    """Mean/max accuracy of the records (and over every member of their isomorphism classes), the
    benchmark's mean/max over the same archs and its all-space baseline, Kendall's tau, Spearman's rho and
    top-10 overlap with the benchmark. Accuracies in percent."""
    if not records:
        raise KhnetError("nothing was evaluated")
    acc = [r.accuracy for r in records]
    unique = {r.iso_class: r.accuracy for r in records}
    class_size = {m[0]: len(m) for m in isomorphism_classes().values()}
    weighted = [a for cls, a in unique.items() for _ in range(class_size[cls])]
    out: dict[str, Any] = {
        "archs": len(records),
        "evaluated_classes": len(unique),
        "mean_accuracy": statistics.fmean(acc),
        "max_accuracy": max(acc),
        "mean_accuracy_over_class_members": statistics.fmean(weighted),
        "class_members": len(weighted),
        "note": note,
    }
    paired = [(r.accuracy, r.benchmark_accuracy) for r in records if r.benchmark_accuracy is not None]
    if paired:
        ours, theirs = zip(*paired, strict=True)
        out.update(
            benchmark_mean_accuracy=statistics.fmean(theirs),
            benchmark_max_accuracy=max(theirs),
            kendall_tau=kendall_tau(ours, theirs),
            spearman_rho=spearman_rho(ours, theirs),
            top10_overlap=top_k_overlap(ours, theirs, 10) if len(paired) >= 10 else None,
        )
    if dataset in BASELINE:
        out["benchmark_space_mean"] = BASELINE[dataset]["mean"]
        out["benchmark_space_max"] = BASELINE[dataset]["max"]
    return out


def evaluate_supernet(
    supernet: SuperNet,
    archs: Sequence[Arch],
    settings: EvalSettings,
    results_dir: str | Path | None = None,
    *,
    shipped_results: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    subnets_per_pass: int = 1,
) -> tuple[list[EvalRecord], dict[str, Any]]:
    """What ``khnet eval`` computes, as one call: ``evaluate_archs`` and its ``summarize``, the summary also
    naming the ``settings`` key, the split and the ``benchmark_setting`` its benchmark figures come from. The
    summary is saved as ``results_dir/eval-summary.json`` (by the main process; the model card ``khnet export``
    writes reads it). Arguments as for ``evaluate_archs``."""
    records = list(
        evaluate_archs(supernet, archs, settings, results_dir, shipped_results=shipped_results, progress=progress,
                       subnets_per_pass=subnets_per_pass)
    )  # fmt: skip
    info = dataset_info(settings.dataset)
    summary = summarize(records, info.note, info.benchmark)
    bench = benchmark_setting(info.benchmark, settings.split)
    summary.update(
        settings=settings.key(),
        split=settings.split,
        benchmark_setting=f"{bench[0]} {bench[1]}" if bench else None,  # what the `benchmark` figures hold
    )
    if results_dir is not None and is_main_process():
        write_json(Path(results_dir) / SUMMARY_FILE, summary)
    return records, summary
