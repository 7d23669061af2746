"""Issue 11, step 3: short screens of the kernel-source forms on the shipped sample, several seeds.

Each screen trains a proxy supernet (C=8, one cell per stage) on the 5,400 training images of the shipped
CIFAR-10 sample with the proxy study's recipe (batch 128, lr 0.2 cosine, 1 warm-up epoch, K=5 Focus-Fair
subnets, soft labels, subnet losses averaged) for ``--epochs`` epochs, then evaluates ``--archs`` cost-stratified
archs (seed 0) after BN recalibration on the sample's 1,000 test images and compares them with NAS-Bench-201's
CIFAR-10 test accuracy. One row per (variant, seed) is appended to
``experiments/results/screen/<variant>.csv``; a (variant, seed) already there is skipped, so the script resumes
(and two processes on different variants never write the same file).

    python experiments/method_screen.py ws paper residual --seeds 0 1      # one process per core, OMP_NUM_THREADS=1
    python experiments/method_screen.py --report                           # mean over seeds per variant

The sample is small and the screens short: a screen ranks candidates for the study's protocol
(experiments/proxy_study.py), it does not replace it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from _results import read_csv, write_csv

from khnet.checkpoint import load_supernet
from khnet.config import SupernetConfig
from khnet.evaluate import EvalSettings, evaluate_archs, stratified_sample, summarize
from khnet.train import TrainConfig, train_supernet

OUT = Path("experiments/results/screen")

# variant -> SupernetConfig overrides (C=8, one cell per stage for all)
VARIANTS: dict[str, dict] = {
    "ws": {"method": "weight-sharing"},
    "paper-rank7": {"method": "kshot-hypernet", "generator": "paper-rank7"},
    "paper": {"method": "kshot-hypernet", "generator": "paper"},
    # the first candidates: the teacher on S + s G(softmax(beta)), the default when they were screened
    "residual": {"method": "kshot-hypernet", "generator": "residual", "residual_gain": 0.1, "teacher_kernels": "beta"},
    "residual-g0": {
        "method": "kshot-hypernet", "generator": "residual", "residual_gain": 0.0, "teacher_kernels": "beta",
    },
    "residual-g0.3": {
        "method": "kshot-hypernet", "generator": "residual", "residual_gain": 0.3, "teacher_kernels": "beta",
    },
    "residual-shared": {
        "method": "kshot-hypernet", "generator": "residual", "residual_gain": 0.1, "teacher_kernels": "shared",
    },
}  # fmt: skip


def screen(variant: str, seed: int, epochs: int, num_archs: int, run_root: Path, smoke: bool = False) -> dict:
    """Train one screen and evaluate it; returns its result row (accuracies in percent)."""
    model_config = SupernetConfig(channels=8, cells_per_stage=1, **VARIANTS[variant])
    config = TrainConfig(
        dataset="sample", epochs=epochs, batch_size=128, lr=0.2, warmup_epochs=1, subnet_reduction="mean",
        seed=seed, device="cpu", num_workers=0, max_steps_per_epoch=2 if smoke else None,
    )  # fmt: skip
    run_dir = run_root / f"{variant}-s{seed}"
    resume = (run_dir / "checkpoint.pt").is_file()
    start = time.perf_counter()
    for _ in train_supernet(run_dir, None if resume else config, None if resume else model_config, resume=resume):
        pass
    train_s = time.perf_counter() - start
    supernet = load_supernet(run_dir)
    settings = EvalSettings(dataset="sample", split="test", calib_images=256 if smoke else 2048)
    records = list(evaluate_archs(supernet, stratified_sample(num_archs, seed=0), settings))
    s = summarize(records)
    return {
        "variant": variant, "seed": seed, "epochs": epochs, "archs": len(records),
        "mean": round(s["mean_accuracy"], 2), "max": round(s["max_accuracy"], 2),
        "tau": round(s["kendall_tau"], 3), "rho": round(s["spearman_rho"], 3),
        "train_s": round(train_s, 1), "eval_s": round(time.perf_counter() - start - train_s, 1),
    }  # fmt: skip


def report(folder: Path = OUT) -> list[dict]:
    """Per variant: mean over seeds of mean accuracy and tau, and their spread (printed and returned)."""
    rows = [r for path in sorted(folder.glob("*.csv")) for r in read_csv(path)]
    out = []
    for variant in dict.fromkeys(r["variant"] for r in rows):
        mine = [r for r in rows if r["variant"] == variant]
        means, taus = [float(r["mean"]) for r in mine], [float(r["tau"]) for r in mine]
        out.append({
            "variant": variant, "seeds": len(mine), "mean": round(statistics.fmean(means), 2),
            "mean_range": f"{min(means):.2f}-{max(means):.2f}", "tau": round(statistics.fmean(taus), 3),
            "tau_range": f"{min(taus):.3f}-{max(taus):.3f}",
        })  # fmt: skip
    for row in out:
        print(row)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="*", help=f"any of: {', '.join(VARIANTS)}")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--archs", type=int, default=40)
    parser.add_argument("--runs", type=Path, default=Path("runs/screen"))
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="2 steps per epoch, 256 calibration images")
    args = parser.parse_args()
    if args.report:
        report(args.out)
        return
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        sys.exit(f"error: unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    torch.set_num_threads(1)
    for variant in args.variants:
        path = args.out / f"{variant}.csv"
        for seed in args.seeds:
            done = read_csv(path) if path.is_file() else []
            if any(int(r["seed"]) == seed for r in done):
                continue
            row = screen(variant, seed, args.epochs, args.archs, args.runs, args.smoke)
            print(row, flush=True)
            write_csv(path, [*done, row])
    sys.exit(0)


if __name__ == "__main__":
    main()
