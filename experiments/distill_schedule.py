"""Issue 7 diagnosis: which part of Algorithm 1 slows learning at CPU scale?

Trains the proxy Kshot-Hypernet supernet (C=8, one cell per stage) on the shipped sample for --epochs epochs
in several variants of Algorithm 1, then evaluates a cost-stratified sample of subnets on the held-out
validation split (BatchNorm recalibrated) and reports the teacher's training accuracy, the subnets' mean and
max accuracy, and Kendall's tau against NAS-Bench-201 (CIFAR-10 valid; the data is the JPEG sample, so only
the ranking is comparable).

Variants: paper (soft labels only, K subnet losses summed), no-distill (labels), mean (soft labels, losses
divided by K), label-warmup (labels for the first epoch, soft labels after).

Run:  python experiments/distill_schedule.py [--epochs 3] [--archs 20] [--method kshot-hypernet]
Writes experiments/results/distill_schedule.csv.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _results import write_csv

from khnet.checkpoint import load_supernet
from khnet.config import SupernetConfig
from khnet.evaluate import EvalSettings, evaluate_archs, stratified_sample, summarize
from khnet.train import EpochEvent, TrainConfig, train_supernet

VARIANTS = {
    "paper": {},
    "no-distill": {"distill": False},
    "mean": {"subnet_reduction": "mean"},
    "label-warmup": {"distill_warmup_epochs": 1},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--archs", type=int, default=20)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--method", default="kshot-hypernet", help="kshot-hypernet, kshot or weight-sharing")
    parser.add_argument("--out", type=Path, default=Path("experiments/results/distill_schedule.csv"))
    args = parser.parse_args()
    model = SupernetConfig(method=args.method, channels=8, cells_per_stage=1)
    archs = stratified_sample(args.archs, seed=0)
    rows = []
    for name in args.variants.split(","):
        train = TrainConfig(dataset="sample", epochs=args.epochs, lr=args.lr, warmup_epochs=1, device="cpu",
                            **VARIANTS[name])  # fmt: skip
        start = time.time()
        with tempfile.TemporaryDirectory() as tmp:
            epochs = [e for e in train_supernet(Path(tmp) / "run", train, model) if isinstance(e, EpochEvent)]
            supernet = load_supernet(Path(tmp) / "run")
        records = list(evaluate_archs(supernet, archs, EvalSettings(dataset="sample", split="valid", calib_images=512)))
        s = summarize(records, "", "cifar10")
        row = {"method": args.method, "variant": name, "epochs": args.epochs, "lr": args.lr,
               "teacher_train_acc_last_epoch": round(epochs[-1].acc_teacher, 2),
               "subnet_loss_last_epoch": round(epochs[-1].loss_subnets, 4),
               "subnets_valid_mean": round(s["mean_accuracy"], 2), "subnets_valid_max": round(s["max_accuracy"], 2),
               "kendall_tau_vs_nb201_c10_valid": round(s["kendall_tau"], 3), "archs": len(records),
               "minutes": round((time.time() - start) / 60, 1)}  # fmt: skip
        print(row, flush=True)
        rows.append(row)
    write_csv(args.out, rows)


if __name__ == "__main__":
    main()
