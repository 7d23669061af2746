"""Measure the supernet's overheads on this machine (issue 3), and write them to docs/performance.md.

1. Weight generation: generating all of one arch's convs (forward + backward of the generator) against one
   forward+backward of that subnet's NB201Net at batch 64.
2. Single path: forward+backward of ``SuperNet.forward(x, arch)`` against the same arch's ``NB201Net``.
3. Activation memory of generation as N grows (autograd-saved tensors of the kernel source).

Run:  python benchmarks/supernet_overhead.py [--repeats 15] [--batch 64] [--archs 6111,9930,0] [--out docs/...]
Each figure is the median of ``repeats`` timed runs after warm-up, the two contenders interleaved.
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
from khnet.hypernet import arch_encoding
from khnet.network import NB201Net
from khnet.space import Arch
from khnet.supernet import SuperNet, path_plan

# label -> SupernetConfig settings; "kshot-hypernet" is the default form (residual since issue 11)
FORMS = {
    "kshot-hypernet": {"method": "kshot-hypernet"},
    "kshot-hypernet-paper": {"method": "kshot-hypernet", "generator": "paper"},
    "kshot-hypernet-paper-rank7": {"method": "kshot-hypernet", "generator": "paper-rank7"},
    "kshot": {"method": "kshot"},
    "weight-sharing": {"method": "weight-sharing"},
}


def timed(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def fwd_bwd(model, x, y, *extra):
    model.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(x, *extra), y).backward()


def generation_step(net: SuperNet, arch: Arch, backward: bool = True) -> None:
    """Generate all of ``arch``'s conv kernels; with ``backward``, push unit-scale gradients back through."""
    layers, _ = path_plan(arch, net.config.cells_per_stage)
    index = {name: torch.tensor(rows) for name, rows in layers.items()}
    if not backward:
        with torch.no_grad():
            net.kernels(arch_encoding(arch), index)
        return
    kernels = net.kernels(arch_encoding(arch), index)
    net.kernels.zero_grad(set_to_none=True)
    if kernels:
        torch.autograd.backward(list(kernels.values()), [torch.ones_like(k) for k in kernels.values()])


def saved_bytes(net: SuperNet, arch: Arch) -> int:
    """Bytes of tensors autograd saves for backward during generation, excluding parameters."""
    params = {p.data_ptr() for p in net.parameters()}
    total = 0

    def pack(t):
        nonlocal total
        if t.data_ptr() not in params:
            total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        layers, _ = path_plan(arch, net.config.cells_per_stage)
        net.kernels(arch_encoding(arch), {n: torch.tensor(r) for n, r in layers.items()})
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--archs", default="6111,9930,11472")
    parser.add_argument("--out", type=Path, default=Path("docs/performance-supernet.json"))
    parser.add_argument("--forms", default=",".join(FORMS), help=f"kernel sources to measure, from: {', '.join(FORMS)}")
    args = parser.parse_args()
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, 32, 32)
    y = torch.randint(0, 10, (args.batch,))
    results = {"machine": f"{platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}",
               "batch": args.batch, "repeats": args.repeats, "archs": {}}  # fmt: skip
    for method in args.forms.split(","):
        supernet = SuperNet(SupernetConfig(**FORMS[method])).train()
        for index in map(int, args.archs.split(",")):
            arch = Arch.from_index(index)
            plain = NB201Net(arch).train()
            for _ in range(3):  # warm-up
                fwd_bwd(plain, x, y), fwd_bwd(supernet, x, y, arch), generation_step(supernet, arch)
            t_plain, t_super, t_gen, t_gen_fwd = [], [], [], []
            for _ in range(args.repeats):  # interleaved so drift hits both alike
                t_plain += timed(lambda: fwd_bwd(plain, x, y), 1)  # noqa: B023
                t_super += timed(lambda: fwd_bwd(supernet, x, y, arch), 1)  # noqa: B023
                t_gen += timed(lambda: generation_step(supernet, arch), 1)  # noqa: B023
                t_gen_fwd += timed(lambda: generation_step(supernet, arch, backward=False), 1)  # noqa: B023
            plain_s, super_s, gen_s, gen_fwd_s = map(statistics.median, (t_plain, t_super, t_gen, t_gen_fwd))
            results["archs"].setdefault(method, {})[index] = {
                "arch": str(arch),
                "nb201net_fwd_bwd_ms": round(plain_s * 1e3, 2),
                "supernet_fwd_bwd_ms": round(super_s * 1e3, 2),
                "generation_fwd_bwd_ms": round(gen_s * 1e3, 3),
                "generation_fwd_ms": round(gen_fwd_s * 1e3, 3),
                "single_path_ratio": round(super_s / plain_s, 3),
                "generation_share": round(gen_s / plain_s, 4),
                "generation_fwd_share": round(gen_fwd_s / plain_s, 4),
            }
            print(method, index, results["archs"][method][index], flush=True)
    arch = Arch.from_index(6111)
    results["generation_saved_bytes_by_N"] = {
        n: saved_bytes(SuperNet(SupernetConfig(num_kernels=n)), arch) for n in (8, 64, 256)
    }
    print(results["generation_saved_bytes_by_N"])
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
