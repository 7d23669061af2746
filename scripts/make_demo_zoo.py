"""Train the zoo's demo supernet on the shipped CIFAR-10 sample and register it in zoo/registry.json.

A DEMO: a proxy supernet (C=8, one cell per stage, h=16, N=16) trained for a few minutes on 5,400 JPEG
CIFAR-10 images with khnet's default recipe (residual generated kernels, teacher on the shared kernels, mean
of the subnet losses) and the proxy study's schedule (batch 128, lr 0.2, 1 warm-up epoch), so that
`khnet sample`, `search` and `eval` work offline out of the box. Its accuracies say nothing about the method
at scale.

Run:  python scripts/make_demo_zoo.py [--epochs 15]     (about 10 minutes on one core)
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from khnet.config import SupernetConfig  # noqa: E402
from khnet.evaluate import EvalSettings, evaluate_archs, stratified_sample, summarize  # noqa: E402
from khnet.hub import save_pretrained, sha256_of  # noqa: E402
from khnet.train import EpochEvent, TrainConfig, train_supernet  # noqa: E402

NAME = "demo-sample"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--lr", type=float, default=0.2)
    args = parser.parse_args()
    model = SupernetConfig(channels=8, cells_per_stage=1, hidden=16, num_kernels=16, mixer_token_hidden=16,
                           mixer_channel_hidden=32)  # fmt: skip
    train = TrainConfig(
        dataset="sample", epochs=args.epochs, batch_size=128, lr=args.lr, warmup_epochs=1, seed=0, device="cpu"
    )
    command = f"python scripts/make_demo_zoo.py --epochs {args.epochs} --lr {args.lr}"
    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        for event in train_supernet(run, train, model):
            if isinstance(event, EpochEvent):
                print(f"epoch {event.epoch}: teacher {event.loss_teacher:.3f} ({event.acc_teacher:.1f}%), "
                      f"subnets {event.loss_subnets:.3f}", flush=True)  # fmt: skip
        minutes = (time.time() - start) / 60
        from khnet.checkpoint import load_supernet

        supernet = load_supernet(run)
        settings = EvalSettings(dataset="sample", split="test")
        records = list(evaluate_archs(supernet, stratified_sample(50, seed=0), settings))
        summary = summarize(records, "", "cifar10")
        metrics = {
            "sample50_test_mean_acc": round(summary["mean_accuracy"], 2),
            "sample50_test_max_acc": round(summary["max_accuracy"], 2),
            "sample50_kendall_tau_vs_nb201": round(summary["kendall_tau"], 3),
            "train_minutes_2cpu": round(minutes, 1),
        }
        print(json.dumps(metrics), statistics.fmean(r.accuracy for r in records))
        target = ROOT / "zoo" / NAME
        if target.exists():
            shutil.rmtree(target)
        config = json.loads((run / "config.json").read_text())
        save_pretrained(supernet, target, config, metrics)
    registry = {
        "supernets": [
            {
                "name": NAME,
                "description": "DEMO only: proxy supernet (C=8, 1 cell/stage) trained minutes on the 5,400-image "
                "JPEG CIFAR-10 sample; not a result",
                "dataset": "sample",
                "method": model.method,
                "source": {"path": f"{NAME}/model.safetensors"},
                "sha256": sha256_of(target / "model.safetensors"),
                "metrics": metrics,
                "command": command,
            }
        ]
    }
    (ROOT / "zoo" / "registry.json").write_text(json.dumps(registry, indent=2) + "\n")
    print(f"wrote {target} and zoo/registry.json")


if __name__ == "__main__":
    main()
