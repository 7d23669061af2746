"""Issue 11, step 5: the paper-size check on one GPU (C=16, 5 cells per stage, JPEG CIFAR-10).

For each method (weight sharing and the default Kshot-Hypernet form), train a supernet for the same number of
steps with the study's recipe at the paper's batch size (256, lr 0.2 cosine, K=5 Focus-Fair subnets, soft
labels, subnet losses averaged, bf16 autocast on CUDA), evaluate ``--archs`` cost-stratified archs (seed 0) at
half and at the full budget (BN recalibrated on 2,048 training images, the 10,000 test images), and log the
rank of the generated kernels, images/s and peak GPU memory. One CSV row per (method, budget).

    python experiments/proxy_data.py --shared PATH                 # once: data/cifar10-jpeg (the whole copy)
    python experiments/gpu_check.py --steps 600 --archs 50         # on the GPU machine: a few minutes
    python experiments/gpu_check.py --smoke                        # on the CPU, the shipped sample, seconds

Accuracies are on CIFAR-10 (JPEG q75 copy) after a few hundred steps: they compare the two methods at equal
budget; they are not NAS-Bench-201 numbers, which appear only as the ranking reference.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

import torch
from _results import write_csv

from khnet.checkpoint import load_supernet
from khnet.config import SupernetConfig
from khnet.evaluate import EvalSettings, evaluate_archs, stratified_sample, summarize
from khnet.hypernet import kernel_spectra
from khnet.space import Arch
from khnet.supernet import SuperNet
from khnet.train import EpochEvent, TrainConfig, build_optimizer, train_step, train_supernet

# "default" = SupernetConfig's defaults, whatever they are when it runs; the H200 run of 2026-11-28
# (experiments/results/gpu_check.csv) measured the then default, "residual-g0.1-beta"
METHODS = {
    "weight-sharing": {"method": "weight-sharing"},
    "default": {},
    "residual-g0.1-beta": {"generator": "residual", "residual_gain": 0.1, "teacher_kernels": "beta"},
}


def kernel_rank_stats(supernet: torch.nn.Module, num_archs: int = 8, seed: int = 0) -> dict[str, float]:
    """Over ``num_archs`` random archs and every generated kernel (``khnet.hypernet.kernel_spectra``): the
    smallest rank / min(C_in, h) (C_in for stored kernels) and the largest and mean share of a kernel's energy
    in its top singular direction."""
    rng = random.Random(seed)
    spectra = kernel_spectra(supernet.kernels, [Arch.random(rng) for _ in range(num_archs)])
    stored = supernet.config.method == "weight-sharing"
    ratios = [k.rank / (k.in_chs if stored else min(k.in_chs, supernet.config.hidden)) for k in spectra]
    shares = [k.top_share for k in spectra]
    return {"min_rank_ratio": min(ratios), "max_top_energy": max(shares), "mean_top_energy": statistics.fmean(shares)}


def probe(method: str, args: argparse.Namespace, steps: int) -> dict[str, float]:
    """Time ``steps`` Algorithm-1 iterations on one fixed random batch (no data loading, after 3 warm-up
    steps), as ``khnet train`` runs them on this device (channels_last, bf16 autocast on CUDA): seconds per
    step, images/s and peak memory (GiB) of training."""
    device = torch.device("cuda" if torch.cuda.is_available() and args.device != "cpu" else "cpu")
    model_config = SupernetConfig(channels=args.channels, cells_per_stage=args.cells, **METHODS[method])
    config = TrainConfig(batch_size=args.batch_size, subnet_reduction="mean", device=str(device))
    torch.manual_seed(args.seed)
    model = SuperNet(model_config).to(device).to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, config)
    amp = torch.bfloat16 if device.type == "cuda" else None
    x = torch.randn(args.batch_size, 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch_size,), device=device)
    generator = torch.Generator().manual_seed(args.seed)

    for phase, n in (("warm-up", 3), ("timed", steps)):
        if phase == "timed":
            if device.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
        for _ in range(n):
            train_step(model, optimizer, x, y, generator, config, warmup=False, amp_dtype=amp)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    model.cpu()  # frees the device for the runs that follow
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {"step_s": seconds, "images_per_s": args.batch_size / seconds, "peak_mem_gib": peak}


def check(method: str, args: argparse.Namespace, probed: dict[str, float]) -> list[dict]:
    """Train ``method`` for ``args.steps`` steps, evaluating at half and full budget; one row per budget."""
    model_config = SupernetConfig(channels=args.channels, cells_per_stage=args.cells, **METHODS[method])
    config = TrainConfig(
        dataset=args.dataset, epochs=2, max_steps_per_epoch=args.steps // 2, batch_size=args.batch_size, lr=0.2,
        warmup_epochs=0, subnet_reduction="mean", seed=args.seed, device=args.device, num_workers=args.workers,
    )  # fmt: skip
    run_dir = args.runs / method
    settings = EvalSettings(
        dataset=args.dataset, split="test", calib_images=args.calib_images, test_images=args.test_images
    )
    archs = stratified_sample(args.archs, seed=0)
    cuda = torch.cuda.is_available() and args.device != "cpu"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    rows, train_s, ips = [], 0.0, []
    for budget, resume in (("half", False), ("full", True)):
        start = time.perf_counter()
        events = train_supernet(
            run_dir, None if resume else config, None if resume else model_config, resume=resume, stop_after_epochs=1
        )
        for event in events:
            if isinstance(event, EpochEvent):
                ips.append(event.images_per_s)
                print(f"{method} {budget}: epoch {event.epoch} teacher {event.loss_teacher:.3f} "
                      f"subnets {event.loss_subnets:.3f} {event.images_per_s:.0f} img/s", flush=True)  # fmt: skip
        train_s += time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
        supernet = load_supernet(run_dir, device="cuda" if cuda else "cpu")
        start = time.perf_counter()
        summary = summarize(list(evaluate_archs(supernet, archs, settings)))
        top10 = summary["top10_overlap"]  # None below 10 archs
        eval_s = time.perf_counter() - start
        rows.append({
            "method": method, "budget": budget,
            "generator": supernet.config.generator if supernet.config.method == "kshot-hypernet" else "",
            "steps": args.steps // 2 * (1 if budget == "half" else 2), "batch_size": args.batch_size,
            "archs": summary["archs"], "mean": round(summary["mean_accuracy"], 2),
            "max": round(summary["max_accuracy"], 2), "tau": round(summary["kendall_tau"], 3),
            "rho": round(summary["spearman_rho"], 3), "top10": None if top10 is None else round(top10, 2),
            **{k: round(v, 3) for k, v in kernel_rank_stats(supernet).items()},
            "probe_step_s": round(probed["step_s"], 4), "probe_images_per_s": round(probed["images_per_s"], 1),
            "probe_peak_mem_gib": round(probed["peak_mem_gib"], 2),
            "train_images_per_s": round(ips[-1], 1), "peak_train_mem_gib": round(peak, 2),
            "train_s": round(train_s, 1), "eval_s": round(eval_s, 1),
            "device": torch.cuda.get_device_name() if cuda else "cpu", "torch": torch.__version__,
        })  # fmt: skip
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600, help="training steps per method (even)")
    parser.add_argument("--archs", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--cells", type=int, default=5)
    parser.add_argument("--dataset", default="imagefolder:data/cifar10-jpeg")
    parser.add_argument("--calib-images", type=int, default=2048)
    parser.add_argument("--test-images", type=int, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", nargs="+", default=["weight-sharing", "default"], choices=list(METHODS))
    parser.add_argument("--runs", type=Path, default=Path("runs/gpu_check"))
    parser.add_argument("--out", type=Path, default=Path("experiments/results/gpu_check.csv"))
    parser.add_argument("--probe-steps", type=int, default=20, help="steps timed alone before training")
    parser.add_argument(
        "--train-budget-s", type=float, default=None,
        help="cap the steps per method so that training takes about this long (from the probe's slower method)",
    )  # fmt: skip
    parser.add_argument("--ready-file", type=Path, default=None, help="touched once the probe is done")
    parser.add_argument("--smoke", action="store_true", help="CPU proof: shipped sample, C=8 N=1, 4 steps, 3 archs")
    args = parser.parse_args()
    if args.smoke:
        args.steps, args.archs, args.batch_size, args.channels, args.cells = 4, 3, 32, 8, 1
        args.dataset, args.calib_images, args.test_images, args.device, args.workers = "sample", 64, 200, "cpu", 0
        args.probe_steps = 2
    # Throughput alone on the device first; the steps follow from the slower method and --train-budget-s
    probed = {method: probe(method, args, args.probe_steps) for method in args.methods}
    for method, p in probed.items():
        print(f"probe {method}: {p['step_s'] * 1000:.1f} ms/step, {p['images_per_s']:.0f} img/s, "
              f"peak {p['peak_mem_gib']:.2f} GiB", flush=True)  # fmt: skip
    if args.train_budget_s:
        affordable = int(args.train_budget_s / max(p["step_s"] for p in probed.values()))
        args.steps = max(2, min(args.steps, affordable) // 2 * 2)
        print(f"steps per method: {args.steps}", flush=True)
    if args.ready_file:
        args.ready_file.touch()  # other work may share the device from here on
    rows: list[dict] = []
    for method in args.methods:
        rows += check(method, args, probed[method])
        write_csv(args.out, rows)  # after every method, so a run cut short keeps what it measured
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
