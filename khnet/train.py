"""Supernet training by Algorithm 1 of the paper: a full-supernet teacher, K distilled subnets per batch.

One iteration (``train_step``):
  a. the teacher (all ops mixed by softmax(beta)) on the batch, cross-entropy with the labels, backward,
     an optimizer step WITH weight decay (weights and beta); its detached logits become soft labels;
  b. K subnets drawn by the sampler, each on the same batch with soft-target cross-entropy (or the labels
     with ``distill=False``), gradients accumulated;
  c. one optimizer step WITHOUT weight decay.
Weight decay never touches BatchNorm parameters or biases. During the first ``warmup_epochs`` the kernel
coefficients lambda are fixed to 1/N.

``train_supernet`` drives the iterations over epochs, writes the run directory and yields events for a UI.
Under ``torchrun`` every rank sees the same batch and draws its own K subnets (K * world_size subnets per
step); gradients are averaged across ranks and only rank 0 writes files.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import closing, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from khnet import __version__
from khnet.checkpoint import (
    CHECKPOINT_FILE,
    METRIC_FIELDS,
    CheckpointError,
    append_metrics,
    load_checkpoint,
    save_checkpoint,
    save_supernet,
    state_hash,
)
from khnet.config import SupernetConfig, TrainConfig
from khnet.data import load_dataset
from khnet.distributed import GradSync, init_from_env, local_rank
from khnet.errors import ConfigError, KhnetError, TrainingDiverged
from khnet.files import METADATA_KEYS, write_run_configs
from khnet.optim import (
    build_optimizer,
    epoch_batches,
    epoch_steps,
    lr_at,
    seeded_init,
    set_learning_rate,
    set_weight_decay,
    sgd_optimizer,
)
from khnet.runtime import amp_dtype, resolve_device, stop_on_signals, use_channels_last
from khnet.samplers import draw_archs
from khnet.supernet import SuperNet

__all__ = [
    "EpochEvent",
    "StepEvent",
    "StoppedEvent",
    "TrainConfig",
    "TrainingDiverged",
    "build_optimizer",
    "optimizer_step",
    "sgd_optimizer",
    "train_step",
    "train_supernet",
]

log = logging.getLogger(__name__)


@dataclass
class StepEvent:
    """One finished iteration. Losses are per image; ``lr`` is the rate used for this step."""

    epoch: int
    step: int
    steps_per_epoch: int
    global_step: int
    lr: float
    loss_teacher: float
    loss_subnets: float
    acc_teacher: float
    images_per_s: float


@dataclass
class EpochEvent:
    """One finished epoch: means over its steps, wall time in seconds, the checkpoint written ('' on ranks
    other than 0) and a hash of the weights (equal on every rank of a DDP run)."""

    epoch: int
    epochs: int
    loss_teacher: float
    loss_subnets: float
    acc_teacher: float
    seconds: float
    images_per_s: float
    checkpoint: str
    weights_hash: str


@dataclass
class StoppedEvent:
    """The run stopped early (signal or ``stop_after``) with everything saved; resume continues it."""

    epoch: int
    step: int
    reason: str
    run_dir: str


@dataclass
class _RunState:
    epoch: int = 0  # epochs completed
    step: int = 0  # steps completed in the current epoch
    global_step: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)  # metrics not yet written


# ---------------------------------------------------------------- the optimizer and one iteration
def _soft_cross_entropy(logits: torch.Tensor, soft_targets: torch.Tensor) -> torch.Tensor:
    return -(soft_targets * F.log_softmax(logits.float(), dim=-1)).sum(-1).mean()


def train_step(
    model: SuperNet,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    generator: torch.Generator,
    config: TrainConfig,
    *,
    warmup: bool = False,
    sync: GradSync | None = None,
    amp_dtype: torch.dtype | None = None,
    scaler: torch.amp.GradScaler | None = None,
    distill: bool | None = None,
) -> tuple[float, float, float]:
    """One iteration of Algorithm 1; returns (teacher loss, mean subnet loss, teacher batch accuracy).

    ``distill`` overrides ``config.distill`` for this step (the loop uses it for ``distill_warmup_epochs``).
    """
    distill = config.distill if distill is None else distill
    scale = 1.0 / config.num_subnets if config.subnet_reduction == "mean" else 1.0
    autocast = torch.autocast(x.device.type, dtype=amp_dtype) if amp_dtype else nullcontext()

    # a. teacher: the full supernet on the labels, a step with weight decay (weights and beta)
    with autocast:
        teacher_logits = model.forward_teacher(x, warmup=warmup)
        loss_teacher = F.cross_entropy(teacher_logits.float(), y)
    optimizer.zero_grad(set_to_none=True)
    _backward(loss_teacher, scaler)
    optimizer_step(model, optimizer, config, sync, scaler, weight_decay=True)
    soft_labels = teacher_logits.detach().float().softmax(-1)

    # b. K subnets from the sampler, on the soft labels (or the true labels without distillation)
    archs = draw_archs(config.sampler, model.beta.detach(), generator, config.num_subnets, config.tau)
    optimizer.zero_grad(set_to_none=True)
    loss_subnets = 0.0
    for arch in archs:
        with autocast:
            logits = model(x, arch, warmup=warmup)
            loss = _soft_cross_entropy(logits, soft_labels) if distill else F.cross_entropy(logits.float(), y)
        _backward(loss * scale, scaler)  # gradients of the K subnets accumulate
        loss_subnets += loss.item() / len(archs)

    # c. one step without weight decay
    optimizer_step(model, optimizer, config, sync, scaler, weight_decay=False)
    if sync is not None:
        sync.buffers(model)
    accuracy = (teacher_logits.detach().argmax(-1) == y).float().mean().item() * 100
    return loss_teacher.item(), loss_subnets, accuracy


def _backward(loss: torch.Tensor, scaler: torch.amp.GradScaler | None) -> None:
    if not torch.isfinite(loss):
        raise TrainingDiverged(f"loss is {loss.item()}")
    (scaler.scale(loss) if scaler else loss).backward()


def optimizer_step(model, optimizer, config, sync, scaler, weight_decay: bool) -> None:
    """One SGD step of Algorithm 1: weight decay on (the teacher's step) or off (the subnets'), gradients
    unscaled (fp16), averaged over ranks (``sync``) and clipped (``config.grad_clip``) first."""
    set_weight_decay(optimizer, weight_decay)
    if scaler:
        scaler.unscale_(optimizer)
    if sync is not None:
        sync(model)
    if config.grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    if scaler:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()


# ---------------------------------------------------------------- the run
def _tensorboard(run_dir: Path):
    """A SummaryWriter into ``run_dir/tensorboard`` when the tensorboard package is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(run_dir / "tensorboard"))


def _run_configs(
    run_dir: Path, config: TrainConfig | None, model_config: SupernetConfig | None, resume: bool
) -> tuple[TrainConfig, SupernetConfig, dict[str, Any] | None]:
    """The run's settings and, on resume, its checkpoint (whose settings win; ``epochs`` may be raised)."""
    if not resume:
        if (run_dir / CHECKPOINT_FILE).exists():
            raise KhnetError(
                f"{run_dir} already holds a run; resume it with --resume {run_dir} or pick a new directory"
            )
        return config or TrainConfig(), model_config or SupernetConfig(), None
    checkpoint = load_checkpoint(run_dir / CHECKPOINT_FILE)
    try:
        saved = checkpoint["config"]
        train_dict = saved["train"]
        if config is not None and config.epochs > train_dict["epochs"]:
            train_dict = {**train_dict, "epochs": config.epochs}
        return TrainConfig.from_dict(train_dict), SupernetConfig.from_dict(saved["model"]), checkpoint
    except (KeyError, TypeError, ConfigError) as err:
        raise CheckpointError(f"checkpoint in {run_dir} does not hold a khnet run config ({err})") from None


class _Run:
    """Everything one training run holds: device and process group, data, model, optimizer, sampler RNG,
    progress; ``save`` writes the run directory (rank 0) and ``step`` does one logged Algorithm-1 iteration."""

    def __init__(self, run_dir: Path, config: TrainConfig, model_config: SupernetConfig, checkpoint) -> None:
        import torch.distributed as dist

        self.run_dir, self.config = run_dir, config
        self.device = resolve_device(config.device, local_rank())
        self.rank, self.world_size = init_from_env(self.device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.sync = GradSync(self.world_size) if self.world_size > 1 else None
        self.train_set = load_dataset(
            config.dataset, "train", root=config.data_dir, valid_fraction=config.valid_fraction, seed=config.seed
        )
        info = self.train_set.info
        if info.num_classes != model_config.num_classes:
            model_config = SupernetConfig.from_dict({**model_config.to_dict(), "num_classes": info.num_classes})
        self.model_config = model_config
        self.steps_per_epoch = epoch_steps(len(self.train_set), config)
        self.total_steps = self.steps_per_epoch * config.epochs
        self.memory_format = torch.channels_last if use_channels_last(config.channels_last) else torch.contiguous_format
        self.model = seeded_init(config.seed, SuperNet, model_config)  # the same on every rank
        self.model = self.model.to(self.device).to(memory_format=self.memory_format)
        self.optimizer = build_optimizer(self.model, config)
        self.amp_dtype = amp_dtype(config.amp, self.device)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        self.generator = torch.Generator().manual_seed(config.seed * 1_000_003 + self.rank)  # each rank its subnets
        self.state = _RunState()
        if checkpoint is not None:
            self._restore(checkpoint)
        elif self.world_size > 1:
            for tensor in self.model.state_dict().values():
                dist.broadcast(tensor, src=0)
        self.is_writer = self.rank == 0
        self.extra = {  # config.json gets input and khnet_version, training.json the rest (khnet.files)
            "input": info.input_spec(),
            "khnet_version": __version__,
            "train": config.to_dict(),
            "dataset": {"name": info.name, "note": info.note, "benchmark": info.benchmark},
            "param_counts": self.model.param_counts(),
        }

    def _restore(self, checkpoint: dict[str, Any]) -> None:
        try:
            self.model.load_state_dict(checkpoint["model"])
            self.optimizer.load_state_dict(checkpoint["optimizer"])
            rng = checkpoint["rng"]["sampler"] if self.world_size == 1 else checkpoint["rng_ranks"][self.rank]
            self.generator.set_state(rng)
        except (KeyError, RuntimeError, ValueError, IndexError) as err:
            raise CheckpointError(f"checkpoint in {self.run_dir} does not match this run: {err}") from None
        s = self.state
        s.epoch, s.step, s.global_step = checkpoint["epoch"], checkpoint["step"], checkpoint["global_step"]

    def write_configs(self) -> None:
        """config.json and training.json, before the first step (rank 0)."""
        if self.is_writer:
            training = {k: v for k, v in self.extra.items() if k not in METADATA_KEYS}
            write_run_configs(self.run_dir, self.model_config.to_dict(), self.extra, training)

    def save(self, reason: str) -> str:
        """The supernet, metrics and a checkpoint to resume from; returns the checkpoint's path ('' off rank 0)."""
        import torch.distributed as dist

        states = None
        if self.world_size > 1:  # every rank's sampler state, so a resumed DDP run draws what it would have
            states = [None] * self.world_size
            dist.all_gather_object(states, self.generator.get_state())
        if not self.is_writer:
            return ""
        s = self.state
        save_supernet(self.model, self.run_dir, extra={**self.extra, "progress": {"epoch": s.epoch, "step": s.step}})
        if s.rows:
            append_metrics(self.run_dir, s.rows)
            s.rows.clear()
        ckpt = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": {"sampler": self.generator.get_state()},  # all other draws are seeded by (seed, epoch)
            "epoch": s.epoch,
            "step": s.step,
            "global_step": s.global_step,
            "config": {"model": self.model_config.to_dict(), "train": self.config.to_dict()},
            "reason": reason,
        }
        if states is not None:
            ckpt["rng_ranks"] = states
        save_checkpoint(self.run_dir / CHECKPOINT_FILE, ckpt)
        return str(self.run_dir / CHECKPOINT_FILE)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> StepEvent:
        """One Algorithm-1 iteration at the scheduled learning rate, counted and logged."""
        config, s, start = self.config, self.state, time.perf_counter()
        x = x.to(self.device, non_blocking=True, memory_format=self.memory_format)
        y = y.to(self.device, non_blocking=True)
        lr = lr_at(config, s.global_step, self.total_steps)
        set_learning_rate(self.optimizer, lr)
        try:
            losses = train_step(
                self.model, self.optimizer, x, y, self.generator, config, warmup=s.epoch < config.warmup_epochs,
                sync=self.sync, amp_dtype=self.amp_dtype, scaler=self.scaler,
                distill=config.distill and s.epoch >= config.distill_warmup_epochs,
            )  # fmt: skip
        except TrainingDiverged as err:
            raise TrainingDiverged(
                f"{err} at epoch {s.epoch + 1} step {s.step + 1}; stopped, the last good checkpoint in "
                f"{self.run_dir} is kept; lower --lr or set --grad-clip, then --resume {self.run_dir}"
            ) from None
        s.step, s.global_step = s.step + 1, s.global_step + 1
        images_per_s = x.shape[0] / max(1e-9, time.perf_counter() - start)
        event = StepEvent(s.epoch, s.step, self.steps_per_epoch, s.global_step, lr, *losses, images_per_s)
        s.rows.append({k: getattr(event, k) for k in METRIC_FIELDS})
        return event

    def stop_requested(self, stop: dict[str, str | None]) -> bool:
        """Whether this rank or (under DDP) any rank was signalled; every rank answers the same at a step."""
        import torch.distributed as dist

        if self.world_size > 1:
            flag = torch.tensor([stop["reason"] is not None], dtype=torch.float32, device=self.device)
            dist.all_reduce(flag)
            if flag.item() > 0 and stop["reason"] is None:
                stop["reason"] = "signal on another rank"
        return stop["reason"] is not None


def train_supernet(
    run_dir: str | Path,
    config: TrainConfig | None = None,
    model_config: SupernetConfig | None = None,
    resume: bool = False,
    stop_after_epochs: int | None = None,
) -> Iterator[StepEvent | EpochEvent | StoppedEvent]:
    """Train a supernet by Algorithm 1 into ``run_dir``, yielding an event per step and per epoch.

    The run directory gets ``config.json`` (flat model config, input normalisation) and ``training.json``
    (``khnet.files``), ``metrics.csv`` (one row per step), ``model.safetensors`` (the supernet with beta) and
    ``checkpoint.pt``, all written atomically at the end of every epoch and when
    SIGINT/SIGTERM arrives (after the current step). ``resume=True`` continues from the checkpoint exactly.

    Args:
        run_dir: the run directory (created if missing).
        config: training settings; ignored on resume (the run's own are used, ``epochs`` may be raised).
        model_config: the supernet to build; ignored on resume.
        resume: continue the run in ``run_dir``.
        stop_after_epochs: save and stop after this many epochs in this call (to fit a session).
    """
    run_dir = Path(run_dir)
    run = _Run(run_dir, *_run_configs(run_dir, config, model_config, resume))
    config, state = run.config, run.state
    run.write_configs()
    board = _tensorboard(run_dir) if run.is_writer else None
    stop: dict[str, str | None] = {"reason": None}
    epochs_this_call = 0
    with stop_on_signals(stop), closing(board) if board is not None else nullcontext():
        while state.epoch < config.epochs:
            run.model.train()
            sums, seen, started = [0.0, 0.0, 0.0], 0, time.perf_counter()
            pin = run.device.type == "cuda"
            for x, y in epoch_batches(run.train_set, config, state.epoch, state.step, run.steps_per_epoch, pin):
                event = run.step(x, y)
                losses = (event.loss_teacher, event.loss_subnets, event.acc_teacher)
                sums = [a + b for a, b in zip(sums, losses, strict=True)]
                seen += 1
                if board is not None:
                    for name in ("loss_teacher", "loss_subnets", "acc_teacher", "lr", "images_per_s"):
                        board.add_scalar(f"train/{name}", getattr(event, name), state.global_step)
                yield event
                if run.stop_requested(stop) and state.step < run.steps_per_epoch:
                    run.save(stop["reason"])
                    yield StoppedEvent(state.epoch, state.step, stop["reason"], str(run_dir))
                    return
            seconds = time.perf_counter() - started
            state.epoch, state.step = state.epoch + 1, 0
            epochs_this_call += 1
            path = run.save("epoch")
            means = [v / max(1, seen) for v in sums]
            yield EpochEvent(state.epoch, config.epochs, *means, seconds, seen * config.batch_size / max(seconds, 1e-9),
                             path, state_hash(run.model.state_dict()))  # fmt: skip
            asked_to_stop = stop["reason"] is not None or (stop_after_epochs and epochs_this_call >= stop_after_epochs)
            if asked_to_stop and state.epoch < config.epochs:
                yield StoppedEvent(state.epoch, 0, stop["reason"] or "stop_after_epochs", str(run_dir))
                return
    log.info("finished %d epochs in %s", config.epochs, run_dir)
