"""``khnet train``: Algorithm 1 on one CPU, one GPU, or many with ``torchrun --nproc-per-node G -m khnet train``."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from khnet.cli._common import JsonOpt, err_console, out_console, print_json
from khnet.config import PROXY_SHAPE, RECIPES, recipe_model_config
from khnet.errors import ConfigError, UsageError, require_choice

__all__ = ["train"]

EXAMPLES = """Examples:

  khnet train --dataset sample --epochs 1 --proxy

  khnet train --dataset cifar10 --method kshot-hypernet -o runs/c10

  khnet train --dataset cifar10 --recipe paper -o runs/c10-paper

  khnet train --resume runs/c10

  torchrun --nproc-per-node 4 -m khnet train --dataset cifar100 -o runs/c100
"""


def train(
    ctx: typer.Context,
    dataset: Annotated[
        str, typer.Option(help="sample, cifar10, cifar100, imagenet16-120 or imagefolder:PATH.")
    ] = "sample",
    run_dir: Annotated[
        Path | None, typer.Option("--run-dir", "-o", help="Run directory (default runs/<method>-<time>).")
    ] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue the run in this directory exactly.")] = None,
    arch: Annotated[
        str | None,
        typer.Option(help="Train this one network from scratch with the supernet's recipe instead (the baseline)."),
    ] = None,
    method: Annotated[str, typer.Option(help="kshot-hypernet, kshot or weight-sharing.")] = "kshot-hypernet",
    epochs: Annotated[
        int | None, typer.Option(help="Training epochs (paper: 300); with --resume, a new total.")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Images per step on every rank.")] = 256,
    lr: Annotated[float, typer.Option(help="Initial learning rate, cosine-decayed per step.")] = 0.2,
    min_lr: Annotated[float, typer.Option(help="Final learning rate.")] = 0.0,
    momentum: Annotated[float, typer.Option(help="SGD momentum (Nesterov).")] = 0.9,
    weight_decay: Annotated[float, typer.Option(help="Weight decay of the teacher step.")] = 5e-4,
    warmup_epochs: Annotated[int, typer.Option(help="Epochs with uniform kernel coefficients.")] = 5,
    sampler: Annotated[str, typer.Option(help="focus-fair, fairnas or uniform.")] = "focus-fair",
    tau: Annotated[float, typer.Option(help="Focus-Fair temperature.")] = 1.5,
    num_subnets: Annotated[int, typer.Option(help="Subnets per step (K).")] = 5,
    distill: Annotated[
        bool, typer.Option("--distill/--no-distill", help="Subnets learn the teacher's soft labels.")
    ] = True,
    distill_warmup_epochs: Annotated[
        int, typer.Option(help="Subnets learn the labels for this many first epochs, then the soft labels.")
    ] = 0,
    recipe: Annotated[
        str,
        typer.Option(
            help="khnet (default: residual generated kernels, teacher on the shared kernels, mean subnet loss) "
            "or paper (the paper's generated kernels and summed subnet losses). Flags below override it."
        ),
    ] = "khnet",
    subnet_reduction: Annotated[
        str | None, typer.Option(help="mean or sum (FairNAS, the paper) of the K subnet losses.")
    ] = None,
    grad_clip: Annotated[float | None, typer.Option(help="Clip the gradient norm (off by default).")] = None,
    generator_lr_scale: Annotated[
        float, typer.Option(help="Learning-rate factor of the kernel source (hypernetwork); 1 = the paper.")
    ] = 1.0,
    max_steps_per_epoch: Annotated[int | None, typer.Option(help="Cap steps per epoch (quick runs).")] = None,
    stop_after_epochs: Annotated[int | None, typer.Option(min=1, help="Save and stop after this many epochs.")] = None,
    proxy: Annotated[bool, typer.Option(help="CPU-sized supernet: C=8, one cell per stage.")] = False,
    channels: Annotated[int | None, typer.Option(help="Channels of the first stage (C).")] = None,
    cells_per_stage: Annotated[int | None, typer.Option(help="Cells per stage (N).")] = None,
    hidden: Annotated[int, typer.Option(help="Architecture feature width h.")] = 32,
    num_kernels: Annotated[int | None, typer.Option(help="Kernel dictionary size N (default per method).")] = None,
    generator: Annotated[
        str | None,
        typer.Option(help="kshot-hypernet kernels: residual (W = S + s G(alpha)), paper, or paper-rank7 (old defect)."),
    ] = None,
    residual_gain: Annotated[
        float | None, typer.Option(help="Initial gain s of the residual generator (0 = weight sharing at start).")
    ] = None,
    teacher_kernels: Annotated[
        str | None, typer.Option(help="Residual generator: teacher kernels from softmax(beta) (beta) or S alone.")
    ] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Where datasets live (default $KHNET_DATA).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    amp: Annotated[str, typer.Option(help="auto (bf16 on CUDA), off, bf16 or fp16.")] = "auto",
    channels_last: Annotated[
        bool | None, typer.Option("--channels-last/--no-channels-last", help="NHWC activations (default per device).")
    ] = None,
    workers: Annotated[int | None, typer.Option(help="Data loader processes.")] = None,
    seed: Annotated[
        int, typer.Option(min=0, max=2**32 - 1, help="Seed of data order, augmentation, init and sampling.")
    ] = 0,
    json_output: JsonOpt = False,
) -> None:
    """Train a supernet by Algorithm 1 (teacher + K distilled subnets per batch) into a run directory."""
    from khnet.distributed import is_main_process
    from khnet.train import TrainConfig, train_supernet  # torch: imported only when a command runs

    rank0 = is_main_process()
    require_choice("recipe", recipe, RECIPES, ConfigError)
    if arch is not None:
        _train_one_arch(ctx, arch, json_output)
        return
    if resume is not None:
        ignored = [
            "--" + name.replace("_", "-")
            for name in ctx.params
            if name not in _RESUME_OPTIONS and getattr(ctx.get_parameter_source(name), "name", "") == "COMMANDLINE"
        ]
        if ignored:
            raise UsageError(f"--resume continues {resume} with its own settings; drop {', '.join(ignored)} "
                             "(only --epochs and --stop-after-epochs apply to a resumed run)")  # fmt: skip
        directory, config, model_config = resume, TrainConfig(epochs=epochs) if epochs is not None else None, None
    else:
        only_khn = [f"--{k.replace('_', '-')}" for k, v in
                    (("generator", generator), ("residual_gain", residual_gain), ("teacher_kernels", teacher_kernels))
                    if v is not None]  # fmt: skip
        if only_khn and method != "kshot-hypernet":
            raise UsageError(f"{', '.join(only_khn)} shape Kshot-Hypernet's kernels; --method {method} has none")
        if not distill and distill_warmup_epochs > 0:
            raise UsageError("--distill-warmup-epochs delays distillation, which --no-distill turns off; drop one")
        config = _train_config(ctx.params, subnet_reduction or RECIPES[recipe]["train"]["subnet_reduction"])
        model_config = recipe_model_config(
            recipe, method, proxy, channels=channels, cells_per_stage=cells_per_stage, hidden=hidden,
            num_kernels=num_kernels, generator=generator, residual_gain=residual_gain, teacher_kernels=teacher_kernels,
        )  # fmt: skip
        directory = run_dir or Path("runs") / f"{method}-{time.strftime('%Y%m%d-%H%M%S')}"
    events = train_supernet(
        directory, config, model_config, resume=resume is not None, stop_after_epochs=stop_after_epochs
    )
    if not rank0:
        for _ in events:
            pass
        return
    _render(events, directory, json_output)


def _render(events, directory: Path, json_output: bool = False) -> None:
    from khnet.train import EpochEvent, StepEvent, StoppedEvent

    progress = Progress(
        TextColumn("[bold]epoch {task.fields[epoch]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("teacher {task.fields[lt]:.3f}  subnets {task.fields[ls]:.3f}  lr {task.fields[lr]:.4f}"),
        TextColumn("{task.fields[ips]:.0f} img/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    )
    epochs: list = []
    task = None
    stopped_by = None
    events = iter(events)
    first = next(events, None)  # set-up errors (data, checkpoint) surface before the live display starts
    with progress:
        for event in itertools.chain([first] if first is not None else [], events):
            if isinstance(event, StepEvent):
                if task is None:
                    task = progress.add_task(
                        "", total=event.steps_per_epoch, epoch=event.epoch + 1, lt=0, ls=0, lr=0, ips=0
                    )
                progress.update(
                    task, completed=event.step, epoch=event.epoch + 1, lt=event.loss_teacher, ls=event.loss_subnets,
                    lr=event.lr, ips=event.images_per_s,
                )  # fmt: skip
            elif isinstance(event, EpochEvent):
                epochs.append(event)
                if task is not None:
                    progress.remove_task(task)
                    task = None
                progress.console.print(
                    f"epoch {event.epoch}/{event.epochs}: teacher loss {event.loss_teacher:.4f} "
                    f"(train acc {event.acc_teacher:.1f}%), subnet loss {event.loss_subnets:.4f}, "
                    f"{event.seconds:.1f} s, {event.images_per_s:.0f} img/s; saved {event.checkpoint}",
                    highlight=False,
                )
            elif isinstance(event, StoppedEvent):
                stopped_by = event.reason
                progress.console.print(
                    f"stopped at epoch {event.epoch + 1} step {event.step} ({event.reason}); everything is saved. "
                    "Continue with:",
                    highlight=False,
                )
                progress.console.print(f"  khnet train --resume {event.run_dir}", highlight=False, soft_wrap=True)
    from khnet.files import read_run_config

    counts = read_run_config(directory).get("param_counts")
    if json_output:  # data on stdout; the progress lines above went to stderr
        rows = [{k: getattr(e, k) for k in ("epoch", "epochs", "loss_teacher", "acc_teacher", "loss_subnets",
                                            "seconds", "images_per_s")} for e in epochs]  # fmt: skip
        print_json({"run_dir": str(directory), "epochs": rows, "stopped_by": stopped_by, "param_counts": counts})
    elif counts:
        parts = ", ".join(f"{k} {v / 1e6:.3f}" for k, v in counts.items() if k != "total")
        out_console.print(f"parameters (M): {counts.get('total', 0) / 1e6:.3f} in all ({parts})", highlight=False)
    if epochs and not json_output:
        table = Table(title=f"Training summary: {directory}", title_justify="left")
        for column in ("epoch", "teacher loss", "teacher train acc %", "subnet loss", "seconds", "img/s"):
            table.add_column(column, justify="right")
        for e in epochs:
            table.add_row(
                str(e.epoch), f"{e.loss_teacher:.4f}", f"{e.acc_teacher:.1f}", f"{e.loss_subnets:.4f}",
                f"{e.seconds:.1f}", f"{e.images_per_s:.0f}",
            )  # fmt: skip
        out_console.print(table)
    if stopped_by in _SIGNAL_EXIT:  # saved and resumable, but not finished: say so to the shell
        raise typer.Exit(_SIGNAL_EXIT[stopped_by])


# supernet-only settings: refused with --arch, which trains one network
_SUPERNET_OPTIONS = (
    "resume", "method", "sampler", "tau", "num_subnets", "distill", "distill_warmup_epochs", "recipe",
    "subnet_reduction", "generator_lr_scale", "hidden", "num_kernels", "generator", "residual_gain",
    "teacher_kernels", "stop_after_epochs", "amp",
)  # fmt: skip


def _train_config(p: dict, subnet_reduction: str):
    """The ``TrainConfig`` of the command line's options (``ctx.params``)."""
    from khnet.train import TrainConfig

    return TrainConfig(
        dataset=p["dataset"], data_dir=str(p["data_dir"]) if p["data_dir"] else None,
        epochs=300 if p["epochs"] is None else p["epochs"], batch_size=p["batch_size"], lr=p["lr"],
        min_lr=p["min_lr"], momentum=p["momentum"], weight_decay=p["weight_decay"],
        warmup_epochs=p["warmup_epochs"], sampler=p["sampler"], tau=p["tau"], num_subnets=p["num_subnets"],
        distill=p["distill"], distill_warmup_epochs=p["distill_warmup_epochs"], subnet_reduction=subnet_reduction,
        grad_clip=p["grad_clip"], generator_lr_scale=p["generator_lr_scale"],
        max_steps_per_epoch=p["max_steps_per_epoch"], seed=p["seed"], device=p["device"],
        channels_last=p["channels_last"], amp=p["amp"], num_workers=p["workers"],
    )  # fmt: skip


def _train_one_arch(ctx: typer.Context, arch: str, json_output: bool) -> None:
    """``khnet train --arch``: one NB201Net from scratch (``khnet.scratch``), saved with its accuracies."""
    from khnet.export import save_network
    from khnet.files import write_json
    from khnet.scratch import train_network
    from khnet.space import Arch

    given = [n for n in ctx.params if getattr(ctx.get_parameter_source(n), "name", "") == "COMMANDLINE"]
    refused = ["--" + n.replace("_", "-") for n in given if n in _SUPERNET_OPTIONS]
    if refused:
        raise UsageError(f"--arch trains one network from scratch; {', '.join(refused)} only apply to a supernet")
    p = ctx.params
    parsed = Arch.coerce(arch)
    config = _train_config(p, RECIPES["khnet"]["train"]["subnet_reduction"])  # supernet fields at their defaults
    shape = {**(PROXY_SHAPE if p["proxy"] else {"channels": 16, "cells_per_stage": 5})}
    shape.update({k: p[k] for k in ("channels", "cells_per_stage") if p[k] is not None})
    directory = p["run_dir"] or Path("runs") / f"scratch-{parsed.index}-{time.strftime('%Y%m%d-%H%M%S')}"
    err_console.print(f"training {parsed} (index {parsed.index}) from scratch, {config.epochs} epochs", highlight=False)
    net, result = train_network(parsed, config, shape["channels"], shape["cells_per_stage"])
    files = save_network(net.cpu(), Path(directory) / "net.safetensors")
    report = {**result.to_dict(), "C": shape["channels"], "N": shape["cells_per_stage"], "dataset": config.dataset,
              "files": [str(f) for f in files]}  # fmt: skip
    write_json(Path(directory) / "scratch.json", {**report, "train": config.to_dict()})
    if json_output:
        print_json(report)
        return
    out_console.print(
        f"{result.arch} (index {result.index}), C={shape['channels']}, N={shape['cells_per_stage']}: valid "
        f"{result.valid_accuracy:.2f}%, test {result.test_accuracy:.2f}% after {result.epochs} epochs "
        f"({result.seconds:.0f} s); wrote {files[0]}",
        highlight=False,
    )


_RESUME_OPTIONS = ("resume", "epochs", "stop_after_epochs", "json_output")

_SIGNAL_EXIT = {"SIGINT": 130, "SIGTERM": 143}  # 128 + signal number, as shells report a killed program

train.__doc__ = f"{train.__doc__}\n\n{EXAMPLES}"
