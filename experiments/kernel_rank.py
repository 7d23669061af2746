"""Issue 11: rank, energy spread and conditioning of the generated kernels, per kernel form.

For each form (``paper-rank7``, the old defect; ``paper``, full-rank z; ``residual``, W = S + s G(alpha)) at the
proxy size (C=8, N=1) and the paper's size (C=16, N=5), at initialisation and after ``--steps`` Algorithm-1
steps on the shipped CIFAR-10 sample (batch 64, lr 0.2), over ``--archs`` random archs: per group of convs the
smallest rank, the largest and median share of a kernel's energy in its top singular direction, and the
median ratio of its smallest to largest singular value (each kernel read as a (C_in, C_out*K*K) matrix,
generated in float64). Weight sharing's stored kernels are the reference.

    python experiments/kernel_rank.py [--steps 20] [--archs 8]   # -> experiments/results/kernel_rank.csv
"""

from __future__ import annotations

import argparse
import random
import statistics
from pathlib import Path

import torch
from _results import write_csv

from khnet.config import SupernetConfig
from khnet.data import load_dataset
from khnet.hypernet import KernelSpectrum, kernel_spectra
from khnet.space import Arch
from khnet.supernet import SuperNet
from khnet.train import TrainConfig, build_optimizer, train_step

FORMS = {
    "weight-sharing": {"method": "weight-sharing"},
    "paper-rank7": {"generator": "paper-rank7"},
    "paper": {"generator": "paper"},
    "residual": {"generator": "residual"},
}
SIZES = {"proxy C=8 N=1": (8, 1), "paper C=16 N=5": (16, 5)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--archs", type=int, default=8)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--out", type=Path, default=Path("experiments/results/kernel_rank.csv"))
    args = parser.parse_args()
    archs = [Arch.random(random.Random(s)) for s in range(args.archs)]
    data = load_dataset("sample", "train")
    loader = torch.utils.data.DataLoader(data, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0))
    rows = []
    for size in args.sizes:
        channels, cells = SIZES[size]
        for form, settings in FORMS.items():
            torch.manual_seed(0)
            net = SuperNet(SupernetConfig(channels=channels, cells_per_stage=cells, **settings))
            config = TrainConfig(batch_size=64, lr=0.2)
            optimizer, generator = build_optimizer(net, config), torch.Generator().manual_seed(0)
            batches = iter(loader)
            for when in ("init", f"after {args.steps} steps"):
                if when != "init":
                    for _ in range(args.steps):
                        x, y = next(batches)
                        train_step(net, optimizer, x, y, generator, config, warmup=False)
                by_group: dict[str, list[KernelSpectrum]] = {}
                for k in kernel_spectra(net.kernels, archs):
                    by_group.setdefault(k.group, []).append(k)
                for group, values in by_group.items():
                    ranks, chs, tops, conds = zip(
                        *((k.rank, k.in_chs, k.top_share, k.sigma_ratio) for k in values), strict=True
                    )
                    rows.append({
                        "size": size, "form": form, "when": when, "group": group, "c_in": chs[0],
                        "hidden": net.config.hidden, "min_rank": min(ranks),
                        "max_top_energy": round(max(tops), 3), "median_top_energy": round(statistics.median(tops), 3),
                        "median_sigma_ratio": f"{statistics.median(conds):.2e}",
                    })  # fmt: skip
                    print(rows[-1], flush=True)
    write_csv(args.out, rows)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
