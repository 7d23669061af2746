"""Subnets per hour of whole-subnet evaluation, before and after issue 16's changes; figures go to docs/performance.md.

One subnet's evaluation is ``khnet.evaluate.evaluate_subnet`` as ``khnet eval`` runs it: bake the arch's kernels,
recalibrate BatchNorm on ``--calib-images`` (one batch), fold BN, test on ``--test-images`` at batch 512,
channels_last. The variants are interleaved arch by arch in one process, so machine noise hits them alike:
  before     the reference ``avg_pool2d`` and glibc's default allocator (what khnet did before issue 16)
  pool       the depthwise-convolution 3x3 average pooling only (``khnet.ops.avg_pool_3x3``)
  allocator  the tuned allocator only (``khnet.runtime.tune_allocator``)
  after      both (what khnet does now)
  stacked-G  ``evaluate_subnets`` with G subnets per pass (kernels stacked, grouped convolutions), when
             ``--stacked G`` is given
Images are random tensors (time does not depend on content). Proxy size is C=8, one cell per stage; full size
C=16, five. Every variant evaluates the same cost-stratified archs; the accuracies must agree.

Run:  python benchmarks/eval_throughput.py --size proxy [--sample 12] [--stacked 4]
      python benchmarks/eval_throughput.py --size full --sample 4 --variants before,after
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import khnet.ops
from khnet.config import SupernetConfig
from khnet.evaluate import evaluate_subnet, evaluate_subnets, stratified_sample
from khnet.runtime import tune_allocator
from khnet.supernet import SuperNet

FAST_POOL = khnet.ops.avg_pool_3x3


def reference_pool(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


VARIANTS = {"before": (False, False), "pool": (True, False), "allocator": (False, True), "after": (True, True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("proxy", "full"), default="proxy")
    parser.add_argument("--sample", type=int, default=12)
    parser.add_argument("--test-images", type=int, default=10_000)
    parser.add_argument("--calib-images", type=int, default=2048)
    parser.add_argument("--variants", default="before,pool,allocator,after")
    parser.add_argument("--stacked", type=int, default=0, help="also time evaluate_subnets with this many per pass")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (on a GPU: --variants after --stacked 8)")
    parser.add_argument("--out", type=Path, default=None, help="default: docs/performance-eval-<size>.json")
    args = parser.parse_args()
    C, N = (8, 1) if args.size == "proxy" else (16, 5)
    torch.manual_seed(0)
    device = torch.device(args.device)
    supernet = SuperNet(SupernetConfig(channels=C, cells_per_stage=N)).to(device).eval()
    cl = torch.channels_last
    calib = torch.randn(args.calib_images, 3, 32, 32, device=device).contiguous(memory_format=cl)
    images = torch.randn(args.test_images, 3, 32, 32, device=device).contiguous(memory_format=cl)
    labels = torch.randint(0, 10, (args.test_images,), device=device)
    archs = stratified_sample(args.sample)
    variants = [v for v in args.variants.split(",") if v]
    seconds: dict[str, list[float]] = {v: [] for v in variants}
    accuracy: dict[str, list[float]] = {v: [] for v in variants}
    if args.stacked:
        seconds[f"stacked-{args.stacked}"], accuracy[f"stacked-{args.stacked}"] = [], []
    evaluate_subnet(supernet, archs[0], calib[:256], images[:512], labels[:512])  # warm-up
    for i, arch in enumerate(archs):
        for name in variants:
            fast_pool, tuned = VARIANTS[name]
            khnet.ops.avg_pool_3x3 = FAST_POOL if fast_pool else reference_pool
            tune_allocator(tuned)
            start = time.perf_counter()
            acc, _ = evaluate_subnet(supernet, arch, calib, images, labels)
            seconds[name].append(time.perf_counter() - start)
            accuracy[name].append(acc)
        print(arch.index, {k: round(v[-1], 2) for k, v in seconds.items() if len(v) == i + 1}, flush=True)
    khnet.ops.avg_pool_3x3 = FAST_POOL
    if args.stacked:
        tune_allocator(True)
        name = f"stacked-{args.stacked}"
        for j in range(0, len(archs), args.stacked):
            group = archs[j : j + args.stacked]
            start = time.perf_counter()
            results = evaluate_subnets(supernet, group, calib, images, labels)
            seconds[name].extend([(time.perf_counter() - start) / len(group)] * len(group))
            accuracy[name].extend(acc for acc, _ in results)
        print(name, round(statistics.fmean(seconds[name]), 2), flush=True)
    first = next(iter(accuracy.values()))  # every variant evaluates the same archs in the same order
    agree = all(max(abs(a - b) for a, b in zip(first, acc, strict=True)) < 0.05 for acc in accuracy.values())
    summary = {
        name: {
            "mean_s_per_subnet": round(statistics.fmean(t), 3),
            "subnets_per_hour": round(3600 / statistics.fmean(t), 1),
            "speedup_vs_before": round(statistics.fmean(seconds["before"]) / statistics.fmean(t), 3)
            if "before" in seconds
            else None,
        }
        for name, t in seconds.items()
    }  # fmt: skip
    out = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, {device}",
        "size": args.size, "C": C, "N": N, "test_images": args.test_images, "calib_images": args.calib_images,
        "archs": [a.index for a in archs], "accuracies_agree": agree, "variants": summary,
        "per_arch_s": {k: [round(x, 3) for x in v] for k, v in seconds.items()},
    }  # fmt: skip
    print(json.dumps({k: v for k, v in out.items() if k != "per_arch_s"}, indent=2))
    (args.out or Path(f"docs/performance-eval-{args.size}.json")).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
