"""Training throughput on this machine (issue 4); figures go to docs/performance.md.

For each method, one full iteration of Algorithm 1 (teacher + K=5 subnets, two optimizer steps) at batch 64
on the full-size supernet (C=16, N=5), against:
  - the same work as 6 plain NB201Net forward+backward passes (the 5 sampled archs and, for the teacher,
    the all-3x3 arch): the overhead of the supernet machinery;
  - a straightforward weight-sharing supernet that computes every op on every edge for all 6 passes (as
    the benchmark authors' search model does), masking unused ops by zero weights.
Also channels_last against contiguous for our iteration and for a plain NB201Net step.

Run:  python benchmarks/train_throughput.py [--repeats 5] [--batch 64] [--out docs/performance-train.json]
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
from khnet.hypernet import arch_encoding
from khnet.network import NB201Net
from khnet.samplers import draw_archs
from khnet.space import Arch
from khnet.supernet import SuperNet
from khnet.train import TrainConfig, build_optimizer, train_step


def median_time(fn, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def naive_pass(model: SuperNet, x: torch.Tensor, op_weights: torch.Tensor) -> torch.Tensor:
    """Every op on every edge, weighted by ``op_weights`` (one-hot for a subnet), weight-sharing kernels."""
    return model.forward_mixed(x, op_weights)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path("docs/performance-train.json"))
    args = parser.parse_args()
    torch.manual_seed(0)
    x, y = torch.randn(args.batch, 3, 32, 32), torch.randint(0, 10, (args.batch,))
    config = TrainConfig()
    archs = draw_archs("fairnas", torch.zeros(6, 5), torch.Generator().manual_seed(0))
    out = {"machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
           "batch": args.batch, "repeats": args.repeats, "archs": [str(a) for a in archs], "methods": {}}  # fmt: skip

    # 6 plain NB201Net passes doing the same work
    plain = [NB201Net(a).train() for a in archs] + [NB201Net(Arch.from_ops(["nor_conv_3x3"] * 6)).train()]
    plain_opts = [torch.optim.SGD(n.parameters(), lr=0.01, momentum=0.9) for n in plain]

    def plain_iteration(memory_format=torch.contiguous_format):
        xx = x.contiguous(memory_format=memory_format)
        for net, opt in zip(plain, plain_opts, strict=True):
            opt.zero_grad()
            F.cross_entropy(net(xx), y).backward()
            opt.step()

    t_plain = median_time(plain_iteration, args.repeats)
    out["plain_6_passes_s"] = round(t_plain, 3)
    print("6 plain NB201Net passes", t_plain, flush=True)

    for method in ("kshot-hypernet", "kshot", "weight-sharing"):
        model = SuperNet(SupernetConfig(method=method)).train()
        opt = build_optimizer(model, config)
        gen = torch.Generator().manual_seed(0)
        t = median_time(lambda: train_step(model, opt, x, y, gen, config, warmup=False), args.repeats)  # noqa: B023
        out["methods"][method] = {"iteration_s": round(t, 3), "images_per_s": round(args.batch / t, 1),
                                  "ratio_to_6_plain_passes": round(t / t_plain, 3)}  # fmt: skip
        print(method, out["methods"][method], flush=True)

    # straightforward weight-sharing supernet: all ops computed in all 6 passes
    naive = SuperNet(SupernetConfig(method="weight-sharing")).train()
    naive_opt = build_optimizer(naive, config)

    def naive_iteration():
        naive_opt.zero_grad()
        teacher = naive_pass(naive, x, naive.op_weights())
        F.cross_entropy(teacher, y).backward()
        naive_opt.step()
        naive_opt.zero_grad()
        soft = teacher.detach().softmax(-1)
        for arch in archs:
            logits = naive_pass(naive, x, arch_encoding(arch))
            (-(soft * logits.log_softmax(-1)).sum(-1).mean()).backward()
        naive_opt.step()

    t_naive = median_time(naive_iteration, args.repeats)
    ours = out["methods"]["kshot-hypernet"]["iteration_s"]
    out["naive_all_ops_iteration_s"] = round(t_naive, 3)
    out["speedup_vs_naive"] = round(t_naive / ours, 2)
    print("naive", t_naive, "speed-up", t_naive / ours, flush=True)

    # channels_last on this device
    model = SuperNet(SupernetConfig()).train().to(memory_format=torch.channels_last)
    opt = build_optimizer(model, config)
    gen = torch.Generator().manual_seed(0)
    xcl = x.contiguous(memory_format=torch.channels_last)
    t_cl = median_time(lambda: train_step(model, opt, xcl, y, gen, config, warmup=False), args.repeats)
    t_plain_cl = median_time(lambda: plain_iteration(torch.channels_last), args.repeats)
    for net in plain:
        net.to(memory_format=torch.channels_last)
    t_plain_cl = median_time(lambda: plain_iteration(torch.channels_last), args.repeats)
    out["channels_last"] = {
        "kshot_hypernet_iteration_s": round(t_cl, 3),
        "speedup_kshot_hypernet": round(ours / t_cl, 3),
        "plain_6_passes_s": round(t_plain_cl, 3),
        "speedup_plain": round(t_plain / t_plain_cl, 3),
    }
    print("channels_last", out["channels_last"], flush=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
