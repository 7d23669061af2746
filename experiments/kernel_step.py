"""Issue 7 diagnosis: how far does one SGD step move a subnet's conv kernels, per kernel source?

A weight-sharing supernet stores each kernel; K-shot mixes N stored kernels; Kshot-Hypernet generates each
kernel as W = (z sum_n lambda_n A_n)^T B. For the same loss, one SGD step (no momentum, lr --lr) changes a
generated kernel by a different amount than a stored one: the effective learning rate of the kernel. This
script measures the relative change ||W_after - W_before|| / ||W_before|| of the 3x3 and 1x1 kernels of one
subnet after one step on its cross-entropy (a batch of the shipped sample, proxy size C=8, N=1), at
initialisation, averaged over --archs archs (each with at least one conv), with and without the warm-up
(uniform lambda); for kshot-hypernet also with the kernel source's learning rate scaled by 0.01
(``--generator-lr-scale 0.01``).

Run:  python experiments/kernel_step.py [--lr 0.2] [--archs 10]
Writes experiments/results/kernel_step.csv.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch
import torch.nn.functional as F
from _results import write_csv

from khnet.config import SupernetConfig
from khnet.data import load_dataset
from khnet.evaluate import stratified_sample
from khnet.supernet import SuperNet


def relative_step(method: str, arch, x, y, lr: float, warmup: bool, generator_scale: float = 1.0) -> float:
    torch.manual_seed(0)
    net = SuperNet(SupernetConfig(method=method, channels=8, cells_per_stage=1))
    net.train()
    before = [k.detach().clone() for cell in net.path_kernels(arch, warmup) for k in cell if k is not None]
    if not before:
        return float("nan")
    loss = F.cross_entropy(net(x, arch, warmup=warmup), y)
    loss.backward()
    source = {id(p) for p in net.kernels.parameters()}
    with torch.no_grad():
        for p in net.parameters():
            if p.grad is not None:
                p -= lr * (generator_scale if id(p) in source else 1.0) * p.grad
    after = [k.detach() for cell in net.path_kernels(arch, warmup) for k in cell if k is not None]
    return statistics.fmean(((a - b).norm() / b.norm()).item() for a, b in zip(after, before, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float, default=0.2)
    parser.add_argument("--archs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("experiments/results/kernel_step.csv"))
    args = parser.parse_args()
    data = load_dataset("sample", "train", augment=False)
    x = torch.stack([data[i][0] for i in range(128)])
    y = torch.tensor([data[i][1] for i in range(128)])
    archs = [a for a in stratified_sample(3 * args.archs, seed=1) if a.count("nor_conv_3x3") + a.count("nor_conv_1x1")]
    archs = archs[: args.archs]
    rows = []
    for method, scale in (("weight-sharing", 1.0), ("kshot", 1.0), ("kshot-hypernet", 1.0), ("kshot-hypernet", 0.01)):
        for warmup in (True, False):
            steps = [relative_step(method, a, x, y, args.lr, warmup, scale) for a in archs]
            row = {"method": method, "warmup_lambda": warmup, "lr": args.lr, "generator_lr_scale": scale,
                   "archs": len(archs),
                   "mean_relative_kernel_step": round(statistics.fmean(steps), 5),
                   "min": round(min(steps), 5), "max": round(max(steps), 5)}  # fmt: skip
            print(row, flush=True)
            rows.append(row)
    write_csv(args.out, rows)


if __name__ == "__main__":
    main()
