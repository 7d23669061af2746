"""One Algorithm-1 step of khnet against the same passes in the benchmark authors' search model (issue 16).

The reference is xautodl's ``GenericNAS201Model`` (NAS-Bench-201's reference search model): the teacher is its
``set_cal_mode("joint")`` pass (every op of every edge weighted by softmax of its architecture parameters) and
each sampled subnet a ``set_cal_mode("dynamic", structure)`` pass. Both sides do the same work per step, on
the same batch and the same 5 archs (khnet's Focus-Fair draw):
  teacher forward + backward on the labels, an SGD step (momentum 0.9, weight decay 5e-4), then the 5 subnets'
  forward + backward on the teacher's soft labels, gradients accumulated, a second SGD step without decay.
khnet runs as ``khnet train`` runs it (channels_last, its default recipe); the reference runs in its own default
(contiguous) memory format and, as a second reference, in channels_last too. Full-size supernets (C=16, N=5),
batch 64, the contenders interleaved, median of ``--repeats`` steps each.

Run:  python benchmarks/train_vs_reference.py [--repeats 7] [--profile] [--out docs/performance-train-vs-reference.json]
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

from khnet.config import SupernetConfig
from khnet.samplers import draw_archs
from khnet.space import OP_NAMES
from khnet.supernet import SuperNet
from khnet.train import TrainConfig, build_optimizer, train_step


def reference_model(C: int, N: int):
    """xautodl's search model over the NAS-Bench-201 space (affine-free BatchNorms with running stats, as in
    the benchmark's search configs)."""
    from xautodl.models.cell_searchs.generic_model import GenericNAS201Model

    return GenericNAS201Model(C, N, 4, 10, list(OP_NAMES), affine=False, track_running_stats=True)


def reference_step(model, optimizer, x, y, structures) -> None:
    """The reference's version of one Algorithm-1 step (see the module docstring)."""
    model.set_cal_mode("joint")
    _, teacher_logits = model(x)
    optimizer.zero_grad(set_to_none=True)
    F.cross_entropy(teacher_logits, y).backward()
    for group in optimizer.param_groups:
        group["weight_decay"] = 5e-4
    optimizer.step()
    soft = teacher_logits.detach().softmax(-1)
    optimizer.zero_grad(set_to_none=True)
    for structure in structures:
        model.set_cal_mode("dynamic", structure)
        _, logits = model(x)
        (-(soft * F.log_softmax(logits, -1)).sum(-1).mean() / len(structures)).backward()
    for group in optimizer.param_groups:
        group["weight_decay"] = 0.0
    optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--cells", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="print the top ops of khnet's step (torch.profiler)")
    parser.add_argument("--no-tune-allocator", action="store_true", help="leave glibc malloc at its defaults")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (float32 on both sides)")
    parser.add_argument("--out", type=Path, default=Path("docs/performance-train-vs-reference.json"))
    args = parser.parse_args()
    try:  # absent before issue 16, so that the script also measures the code before it
        from khnet.runtime import tune_allocator
    except ImportError:
        tune_allocator = None
    tuned = False if args.no_tune_allocator or tune_allocator is None else tune_allocator()
    from xautodl.models.cell_searchs.genotypes import Structure

    torch.manual_seed(0)
    cl = torch.channels_last
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    x = torch.randn(args.batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (args.batch,), device=device)
    config = TrainConfig()
    ours = SuperNet(SupernetConfig(channels=args.channels, cells_per_stage=args.cells)).to(device)
    ours = ours.train().to(memory_format=cl)
    ours_opt = build_optimizer(ours, config)
    generator = torch.Generator().manual_seed(0)
    archs = draw_archs(config.sampler, ours.beta.detach(), torch.Generator().manual_seed(0), config.num_subnets)
    structures = [Structure.str2structure(str(a)) for a in archs]
    refs = {}
    for name, fmt in (("reference", torch.contiguous_format), ("reference_channels_last", cl)):
        model = reference_model(args.channels, args.cells).to(device).train().to(memory_format=fmt)
        refs[name] = (model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), x.contiguous(memory_format=fmt))
    x_cl = x.contiguous(memory_format=cl)

    contenders = {
        "khnet": lambda: train_step(ours, ours_opt, x_cl, y, generator, config, warmup=False),
        **{
            name: (lambda m=m, o=o, xx=xx: reference_step(m, o, xx, y, structures)) for name, (m, o, xx) in refs.items()
        },
    }
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for fn in contenders.values():  # warm-up
        fn()
    for _ in range(args.repeats):
        for name, fn in contenders.items():
            sync()
            start = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - start)
    med = {name: statistics.median(t) for name, t in times.items()}
    out = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, {device}",
        "allocator_tuned": tuned,
        "batch": args.batch, "C": args.channels, "N": args.cells, "repeats": args.repeats,
        "archs": [str(a) for a in archs],
        "median_s": {k: round(v, 4) for k, v in med.items()},
        "min_s": {k: round(min(v), 4) for k, v in times.items()},
        "ratio_vs_reference": round(med["khnet"] / med["reference"], 3),
        "ratio_vs_reference_channels_last": round(med["khnet"] / med["reference_channels_last"], 3),
    }  # fmt: skip
    print(json.dumps(out, indent=2))
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(3):
                contenders["khnet"]()
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)
        print(table)
        out["profile_top_ops"] = [
            {"op": e.key, "self_ms_per_step": round(e.self_cpu_time_total / 3000, 1), "calls_per_step": e.count // 3}
            for e in sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:12]
        ]
    args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
