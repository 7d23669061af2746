"""Cost of evaluating one subnet straight from the supernet (issue 5); figures go to docs/performance.md.

Per arch, at full scale (C=16, N=5, CIFAR-10 shapes, 10,000 test images, 2,048 recalibration images):
  bake      generate the arch's kernels and build the standalone NB201Net
  recal     BatchNorm recalibration on 2,048 images
  test      the test pass on 10,000 images with the baked net (eval mode)
  folded    the same test pass with BatchNorms folded into the convs
against "pure inference": the test pass of a plain NB201Net of the same arch. Images are random tensors:
time does not depend on content. Then projects subnets/hour and the time of --all (6,466 evaluations).

Run:  python benchmarks/eval_overhead.py [--sample 8 | --archs 6111,9930] [--test-images 10000]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from khnet.config import SupernetConfig
from khnet.evaluate import measure_accuracy, recalibrate_bn, stratified_sample
from khnet.network import NB201Net, fold_bn
from khnet.space import Arch, isomorphism_classes
from khnet.supernet import SuperNet


def clock(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default="", help="indices; default: a stratified sample of --sample archs")
    parser.add_argument("--sample", type=int, default=8)
    parser.add_argument("--test-images", type=int, default=10_000)
    parser.add_argument("--calib-images", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--channels-last", action="store_true", help="NHWC for every network and input")
    parser.add_argument("--out", type=Path, default=Path("docs/performance-eval.json"))
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    supernet = SuperNet(SupernetConfig()).to(device).eval()
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    calib = torch.randn(args.calib_images, 3, 32, 32, device=device).contiguous(memory_format=fmt)
    images = torch.randn(args.test_images, 3, 32, 32, device=device).contiguous(memory_format=fmt)
    labels = torch.randint(0, 10, (args.test_images,), device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    rows = {}
    archs = [Arch.from_index(int(i)) for i in args.archs.split(",")] if args.archs else stratified_sample(args.sample)
    for arch in archs:
        index = arch.index
        plain = NB201Net(arch).to(device, memory_format=fmt).eval()
        measure_accuracy(plain, images[:1024], labels[:1024], args.batch)  # warm-up
        t_plain, _ = clock(lambda: (measure_accuracy(plain, images, labels, args.batch), sync()))  # noqa: B023
        t_bake, net = clock(lambda: supernet.subnet(arch).to(memory_format=fmt))  # noqa: B023
        t_recal, _ = clock(lambda: (recalibrate_bn(net, calib, args.calib_images), sync()))  # noqa: B023
        net.eval()
        t_test, _ = clock(lambda: (measure_accuracy(net, images, labels, args.batch), sync()))  # noqa: B023
        t_fold, folded = clock(lambda: fold_bn(net))  # noqa: B023
        t_test_folded, _ = clock(lambda: (measure_accuracy(folded, images, labels, args.batch), sync()))  # noqa: B023
        total = t_bake + t_recal + t_test
        rows[index] = {
            "arch": str(arch), "mflops": round(arch.cost().mflops, 2),
            "pure_inference_s": round(t_plain, 3), "bake_s": round(t_bake, 4), "recal_s": round(t_recal, 3),
            "test_s": round(t_test, 3), "fold_s": round(t_fold, 4), "test_folded_s": round(t_test_folded, 3),
            "per_subnet_s": round(total, 3), "overhead": round(total / t_plain - 1, 3),
            "per_subnet_folded_s": round(t_bake + t_recal + t_fold + t_test_folded, 3),
            "overhead_folded_vs_pure": round((t_bake + t_recal + t_fold + t_test_folded) / t_plain - 1, 3),
        }  # fmt: skip
        print(index, rows[index], flush=True)
    mean_total = statistics.fmean(r["per_subnet_s"] for r in rows.values())
    classes = len(isomorphism_classes())
    out = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, {device}",
        "channels_last": args.channels_last,
        "test_images": args.test_images, "calib_images": args.calib_images, "batch": args.batch, "archs": rows,
        "mean_per_subnet_s": round(mean_total, 3), "subnets_per_hour": round(3600 / mean_total, 1),
        "projected_all_hours": round(classes * mean_total / 3600, 2),
        "note": "projection from the mean over the archs above (a cost-stratified sample unless --archs was given)",
    }  # fmt: skip
    print(json.dumps({k: v for k, v in out.items() if k != "archs"}, indent=2))
    args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
