"""Evaluate subnets straight from a supernet: bake, recalibrate BatchNorm, test; compare with the benchmark.

``evaluate_archs(supernet, archs, settings)`` yields one ``EvalRecord`` per requested arch. Isomorphic archs
(the benchmark's ``unique_key``) share one evaluation: the class's smallest index is evaluated and its
accuracy given to every member. Results are appended, one fsynced CSV line each, to
``eval-<supernet hash>.csv`` in the results directory as they are produced; a later call with the same
settings reuses them, so a killed evaluation resumes where it stopped with nothing lost or duplicated.
Under ``torchrun`` each rank evaluates its share of the classes into its own file; readers merge them.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import random
import statistics
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from khnet.benchmark import BASELINE, ShippedGroundTruth
from khnet.checkpoint import atomic_write, state_hash
from khnet.data import ArrayDataset, dataset_info, load_dataset
from khnet.distributed import init_from_env
from khnet.errors import KhnetError, UsageError
from khnet.metrics import kendall_tau, spearman_rho, top_k_overlap
from khnet.network import fold_bn
from khnet.space import NUM_ARCHS, Arch, isomorphism_classes
from khnet.stacked import StackedNets

__all__ = [
    "EvalRecord",
    "EvalSettings",
    "auto_subnets_per_pass",
    "benchmark_setting",
    "calibration_images",
    "evaluate_archs",
    "evaluate_subnet",
    "evaluate_subnets",
    "read_result_rows",
    "read_results",
    "recalibrate_bn",
    "stratified_sample",
    "summarize",
    "write_results_table",
]

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- BatchNorm recalibration
@torch.no_grad()
def recalibrate_bn(
    net: nn.Module, data: torch.Tensor | Iterable, num_images: int = 2048, batch_size: int | None = None
) -> int:
    """Reset every BatchNorm's running statistics to the exact mean and (unbiased) variance of its inputs
    over ``num_images`` images: a cumulative average over the whole subset, not an EMA.

    BatchNorms run in train mode (batch statistics) while the statistics are gathered, with no gradients;
    the network's train/eval mode is restored afterwards. When one batch holds the whole subset (the
    default for a tensor), the BatchNorms' own batch statistics are the answer (momentum 1); otherwise
    per-batch moments are gathered by hooks and merged exactly.

    Args:
        net: any module with BatchNorm layers.
        data: a tensor of normalised images (N, 3, H, W), or an iterable of ``(images, labels)`` batches;
            pass un-augmented images.
        num_images: how many images to use (the first ones of ``data``).
        batch_size: batch size when ``data`` is a tensor (default: all ``num_images`` in one batch).

    Returns:
        The number of images used.
    """
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    device = next(net.parameters()).device
    was_training = net.training
    saved_momentum = [m.momentum for m in norms]
    if torch.is_tensor(data) and (batch_size is None or batch_size >= min(num_images, len(data))):
        x = data[:num_images].to(device)
        try:
            for m in norms:
                m.reset_running_stats()
                m.momentum = 1.0  # running statistics := this batch's (unbiased variance)
            net.train()
            net(x)
        finally:
            for m, momentum in zip(norms, saved_momentum, strict=True):
                m.momentum = momentum
            net.train(was_training)
        return len(x)

    moments: dict[nn.Module, tuple[torch.Tensor, torch.Tensor, int]] = {}

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        x = inputs[0].detach()
        var, mean = torch.var_mean(x, dim=[d for d in range(x.dim()) if d != 1], unbiased=False)
        n = x.numel() // x.shape[1]
        if module not in moments:
            moments[module] = (mean.double(), var.double() * n, n)
            return
        m0, m2, n0 = moments[module]  # merge (Chan et al.): exact mean and sum of squared deviations
        delta = mean.double() - m0
        total = n0 + n
        moments[module] = (m0 + delta * n / total, m2 + var.double() * n + delta.square() * n0 * n / total, total)

    handles = [m.register_forward_pre_hook(hook) for m in norms]
    used = 0
    try:
        net.train()
        step = batch_size or 256
        batches = (data[i : i + step] for i in range(0, len(data), step)) if torch.is_tensor(data) else data
        for batch in batches:
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            x = x[: num_images - used].to(device)
            if len(x) == 0:
                break
            net(x)
            used += len(x)
            if used >= num_images:
                break
    finally:
        for handle in handles:
            handle.remove()
        net.train(was_training)
    for module in norms:
        if module in moments:
            mean, m2, n = moments[module]
            module.running_mean.copy_(mean.to(module.running_mean.dtype))
            module.running_var.copy_((m2 / max(1, n - 1)).to(module.running_var.dtype))
            module.num_batches_tracked.fill_(1)
    return used


# ---------------------------------------------------------------- settings, data, benchmark matching
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


def _eval_data(settings: EvalSettings) -> tuple[torch.Tensor, torch.Tensor, ArrayDataset]:
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


RESULT_FIELDS = ("settings", "iso_class", "accuracy", "loss", "seconds", "images", "calib_images", "time")


def _results_files(results_dir: Path, model_hash: str) -> list[Path]:
    """Result files of one supernet in a folder: the writable ``eval-<hash>[-r<rank>].csv`` and shipped,
    read-only ``eval-<hash>.csv.gz`` tables (a zoo entry's whole-space evaluation)."""
    return sorted(results_dir.glob(f"eval-{model_hash}*.csv")) + sorted(results_dir.glob(f"eval-{model_hash}*.csv.gz"))


def _read_text(path: Path) -> str:
    if path.suffix == ".gz":
        import gzip

        return gzip.decompress(path.read_bytes()).decode()
    return path.read_text()


def read_result_rows(results_dir: str | Path, model_hash: str) -> list[dict[str, str]]:
    """Every complete stored row of one supernet in a folder (all settings), as dicts of strings."""
    rows = []
    for path in _results_files(Path(results_dir), model_hash):
        rows += [r for r in csv.DictReader(io.StringIO(_read_text(path))) if r.get("time")]
    return rows


def write_results_table(path: str | Path, rows: Sequence[dict[str, Any]]) -> Path:
    """Write result rows as a shipped, read-only table (``eval-<hash>.csv.gz``): one row per (settings,
    class), sorted, gzipped with a fixed timestamp so that the same results give the same bytes."""
    import gzip

    unique = {(r["settings"], int(r["iso_class"])): r for r in rows}
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=RESULT_FIELDS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(unique[k] for k in sorted(unique))
    atomic_write(path, lambda tmp: tmp.write_bytes(gzip.compress(out.getvalue().encode(), mtime=0)))
    return Path(path)


def read_results(
    results_dir: str | Path | Sequence[str | Path], model_hash: str, settings: EvalSettings
) -> dict[int, dict[str, float]]:
    """Stored results for this supernet and settings: iso class -> {accuracy, loss, seconds}.

    ``results_dir`` may be one folder or several (e.g. a zoo entry's shipped table, then the user's cache);
    later folders win on a class they share. Partial lines (a run killed mid-write) are ignored.
    """
    found: dict[int, dict[str, float]] = {}
    key = settings.key()
    folders = [results_dir] if isinstance(results_dir, (str, Path)) else list(results_dir)
    for folder in folders:
        for row in read_result_rows(folder, model_hash):
            try:
                if row["settings"] == key:
                    found[int(row["iso_class"])] = {k: float(row[k]) for k in ("accuracy", "loss", "seconds")}
            except (KeyError, TypeError, ValueError):
                continue
    return found


class _ResultsLock:
    """An exclusive advisory lock (``flock``) on ``eval-<hash>[-r<rank>].lock`` beside the results file, held
    while results are written: a second evaluation of the same supernet into the same folder says it waits,
    then reuses what the first one stored instead of evaluating every arch again."""

    def __init__(self, results_dir: Path, model_hash: str, rank: int) -> None:
        import fcntl

        name = f"eval-{model_hash}.lock" if rank == 0 else f"eval-{model_hash}-r{rank}.lock"
        try:
            results_dir.mkdir(parents=True, exist_ok=True)
            self.file = (results_dir / name).open("a+")
        except OSError as err:
            raise KhnetError(f"results folder {results_dir} cannot be written to ({err.strerror}); "
                             "choose a writable one (e.g. set KHNET_RESULTS)") from None  # fmt: skip
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("another evaluation is writing %s; waiting for it to finish", results_dir / name)
            fcntl.flock(self.file, fcntl.LOCK_EX)
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"{os.getpid()}\n")
        self.file.flush()

    def release(self) -> None:
        import fcntl

        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()


class _ResultsWriter:
    """Appends rows to ``eval-<hash>[-r<rank>].csv``; each line is written whole and fsynced."""

    def __init__(self, results_dir: Path, model_hash: str, rank: int) -> None:
        results_dir.mkdir(parents=True, exist_ok=True)
        self.path = results_dir / (f"eval-{model_hash}.csv" if rank == 0 else f"eval-{model_hash}-r{rank}.csv")
        if self.path.is_file():
            text = self.path.read_text()
            if text and not text.endswith("\n"):  # a line cut by a kill: drop it
                self.path.write_text(text[: text.rfind("\n") + 1])
        if not self.path.is_file() or self.path.stat().st_size == 0:
            self.path.write_text(",".join(RESULT_FIELDS) + "\n")

    def append(self, row: dict[str, Any]) -> None:
        out = io.StringIO()
        csv.DictWriter(out, fieldnames=RESULT_FIELDS, lineterminator="\n").writerow(row)
        with self.path.open("a") as f:
            f.write(out.getvalue())
            f.flush()
            os.fsync(f.fileno())


# ---------------------------------------------------------------- evaluation
def stratified_sample(n: int, seed: int = 0) -> list[Arch]:
    """``n`` distinct archs spread over the cost range: the space sorted by MFLOPs is cut into ``n`` equal
    strata and one arch is drawn from each (seeded). Includes degenerate archs where they fall."""
    if not 1 <= n <= NUM_ARCHS:
        raise UsageError(f"--sample {n}: choose 1..{NUM_ARCHS}")
    rng = random.Random(seed)
    archs = sorted(Arch.all(), key=lambda a: (a.cost().mflops, a.index))
    bounds = [round(i * NUM_ARCHS / n) for i in range(n + 1)]
    return [archs[rng.randrange(lo, hi)] for lo, hi in pairwise(bounds)]


@torch.inference_mode()
def _accuracy(net: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int) -> tuple[float, float]:
    device = next(net.parameters()).device
    correct, loss = 0, 0.0
    for i in range(0, len(images), batch_size):
        x, y = images[i : i + batch_size].to(device), labels[i : i + batch_size].to(device)
        logits = net(x)
        correct += (logits.argmax(-1) == y).sum().item()
        loss += nn.functional.cross_entropy(logits.float(), y, reduction="sum").item()
    return 100.0 * correct / len(images), loss / len(images)


def evaluate_subnet(
    supernet: nn.Module,
    arch: Arch | str | int,
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
    return _accuracy(fold_bn(net.eval()), images, labels, batch_size)


def auto_subnets_per_pass(device: torch.device) -> int:
    """How many subnets ``evaluate_archs`` stacks per pass by default: 1 everywhere for now. On this 2-core
    CPU stacking was measured slower at proxy and full size (the ops are bound by memory traffic, not by
    per-op overhead; docs/performance.md); on a GPU, where small subnets are launch-bound, it is expected to
    pay but has not been measured yet (``benchmarks/eval_throughput.py --stacked G`` measures it)."""
    return 1


def evaluate_subnets(
    supernet: nn.Module,
    archs: Sequence[Arch | str | int],
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
    supernet: nn.Module,
    archs: Sequence[Arch | str | int],
    settings: EvalSettings | None = None,
    results_dir: str | Path | None = None,
    ground_truth: ShippedGroundTruth | None = None,
    channels_last: bool = True,
    model_hash: str | None = None,
    shipped_results: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    subnets_per_pass: int | None = None,
) -> Iterator[EvalRecord]:
    """Evaluate ``archs`` from ``supernet`` (bake, recalibrate BN, test), one record per arch, in order.

    Args:
        supernet: a ``SuperNet`` (on the device to evaluate on).
        archs: the archs (``Arch``, strings or indices); duplicates and isomorphic twins are evaluated once.
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
            rounding); None: ``auto_subnets_per_pass`` for the device.
    """
    import torch.distributed as dist

    if subnets_per_pass is not None and subnets_per_pass < 1:
        raise UsageError(f"subnets_per_pass={subnets_per_pass}: give 1 or more")

    settings = settings or EvalSettings()
    archs = [Arch.coerce(a) for a in archs]
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
        lock = _ResultsLock(Path(results_dir), model_hash, rank)
        done = read_results(stores, model_hash, settings)
        todo = [c for c in wanted if c not in done]
    mine = todo[rank::world]
    fresh: dict[int, dict[str, float]] = {}
    was_training = supernet.training
    supernet.eval()
    try:
        writer = _ResultsWriter(Path(results_dir), model_hash, rank) if results_dir is not None and mine else None
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if mine:
            calib = calibration_images(settings).contiguous(memory_format=memory_format)
            images, labels, _ = _eval_data(settings)
            images = images.contiguous(memory_format=memory_format)
        group = subnets_per_pass or auto_subnets_per_pass(param.device if param is not None else torch.device("cpu"))
        for first in range(0, len(mine), group):
            chunk = mine[first : first + group]
            start = time.perf_counter()
            if len(chunk) == 1:
                results = [evaluate_subnet(supernet, chunk[0], calib, images, labels, settings.batch_size)]
            else:
                results = evaluate_subnets(supernet, chunk, calib, images, labels, settings.batch_size)
            seconds = (time.perf_counter() - start) / len(chunk)
            for cls, (accuracy, loss) in zip(chunk, results, strict=True):
                result = fresh[cls] = {"accuracy": accuracy, "loss": loss, "seconds": seconds}
                if writer is not None:
                    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
                    writer.append({"settings": settings.key(), "iso_class": cls, **result, "images": len(labels),
                                   "calib_images": settings.calib_images, "time": stamp})  # fmt: skip
            if progress is not None:
                progress(first + len(chunk), len(mine))
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

    info = dataset_info(settings.dataset)  # no images read: stored results need no data
    bench = benchmark_setting(info.benchmark, settings.split)
    num_classes, resolution = _shape_of(supernet)
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


def _shape_of(supernet: nn.Module) -> tuple[int, int]:
    return supernet.config.num_classes, 16 if supernet.config.num_classes == 120 else 32


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
