"""Issue 7 diagnosis: how fast does each kind of network learn on the shipped sample, teacher-only?

Trains, with the same data, schedule-free SGD (momentum 0.9, Nesterov, weight decay 5e-4, constant lr) and
batch 256 on the 5,400 training images of `sample`, for --epochs epochs:
  - a plain NB201Net of one arch (the all-3x3 arch: the largest),
  - the full-supernet teacher alone (Eq. 6, softmax(beta) mixing) for each method,
and prints the training accuracy and loss per epoch, so that a slow teacher shows up in minutes.

Run:  python experiments/teacher_learning.py [--epochs 3] [--lr 0.05] [--channels 8] [--cells 1]
Writes experiments/results/teacher_learning.csv.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from _results import write_csv

from khnet.config import SupernetConfig
from khnet.data import load_dataset
from khnet.network import NB201Net
from khnet.space import Arch
from khnet.supernet import SuperNet
from khnet.train import TrainConfig, build_optimizer


def run(name: str, model: torch.nn.Module, forward, data, args) -> list[dict]:
    torch.manual_seed(0)
    if isinstance(model, SuperNet):
        opt = build_optimizer(model, TrainConfig(lr=args.lr))
    else:
        opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    rows = []
    model.train()
    for epoch in range(args.epochs):
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(epoch))
        correct = seen = 0
        loss_sum = 0.0
        start = time.perf_counter()
        for i in range(0, len(order) - args.batch + 1, args.batch):
            batch = [data[j] for j in order[i : i + args.batch].tolist()]
            x = torch.stack([b[0] for b in batch]).contiguous(memory_format=torch.channels_last)
            y = torch.tensor([b[1] for b in batch])
            logits = forward(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            correct += (logits.argmax(-1) == y).sum().item()
            seen += len(y)
            loss_sum += loss.item() * len(y)
        row = {"model": name, "epoch": epoch + 1, "train_acc": round(100 * correct / seen, 2),
               "train_loss": round(loss_sum / seen, 4), "seconds": round(time.perf_counter() - start, 1)}  # fmt: skip
        print(row, flush=True)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--cells", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("experiments/results/teacher_learning.csv"))
    args = parser.parse_args()
    data = load_dataset("sample", "train")
    rows = []
    torch.manual_seed(0)
    plain = NB201Net(Arch.from_ops(["nor_conv_3x3"] * 6), C=args.channels, N=args.cells).to(
        memory_format=torch.channels_last
    )
    rows += run("NB201Net all-3x3", plain, plain, data, args)
    for method in ("weight-sharing", "kshot", "kshot-hypernet"):
        torch.manual_seed(0)
        net = SuperNet(SupernetConfig(method=method, channels=args.channels, cells_per_stage=args.cells))
        net = net.to(memory_format=torch.channels_last)
        rows += run(f"teacher {method}", net, net.forward_teacher, data, args)
    write_csv(args.out, rows)


if __name__ == "__main__":
    main()
