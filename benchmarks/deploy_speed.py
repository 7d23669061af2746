"""Deployed inference speed per export format on this machine (issue 6); figures go to docs/performance.md.

The best CIFAR-10 arch (index 6111) at full size (C=16, N=5), batch 256, eval mode, median of --repeats:
eager NB201Net (the baseline), eager channels_last, BatchNorm folded (+ channels_last), the torch.export
program (.pt2), an AOTInductor package (--compile) and onnxruntime (.onnx). Weights are random: speed does
not depend on them.

Run:  python benchmarks/deploy_speed.py [--repeats 10] [--batch 256] [--skip-compile]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from khnet.export import load_network, save_network
from khnet.network import NB201Net, fold_bn


def median_ms(fn, x, repeats: int) -> float:
    with torch.inference_mode():
        for _ in range(2):
            fn(x)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn(x)
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--arch", type=int, default=6111)
    parser.add_argument("--skip-compile", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("docs/performance-deploy.json"))
    args = parser.parse_args()
    torch.manual_seed(0)
    net = NB201Net(args.arch).eval()
    x = torch.randn(args.batch, 3, 32, 32)
    xcl = x.contiguous(memory_format=torch.channels_last)
    rows: dict[str, dict] = {}
    tmp = Path(tempfile.mkdtemp())

    def record(name: str, ms: float, extra: dict | None = None) -> None:
        rows[name] = {"ms_per_batch": round(ms, 1), "images_per_s": round(args.batch / ms * 1e3, 1), **(extra or {})}
        print(name, rows[name], flush=True)

    record("eager", median_ms(net, x, args.repeats))
    cl = NB201Net(args.arch).eval()
    cl.load_state_dict(net.state_dict())
    cl = cl.to(memory_format=torch.channels_last)
    record("eager channels_last", median_ms(cl, xcl, args.repeats))
    folded = fold_bn(net)
    record("folded", median_ms(folded, x, args.repeats))
    record("folded channels_last", median_ms(folded.to(memory_format=torch.channels_last), xcl, args.repeats))
    save_network(net, tmp / "net.pt2")
    record("torch.export .pt2", median_ms(load_network(tmp / "net.pt2"), x, args.repeats))
    save_network(net, tmp / "folded.pt2", fold=True)
    record("torch.export .pt2 folded", median_ms(load_network(tmp / "folded.pt2"), x, args.repeats))
    try:
        import onnxruntime

        save_network(net, tmp / "net.onnx", fold=True)
        session = onnxruntime.InferenceSession(str(tmp / "net.onnx"), providers=["CPUExecutionProvider"])
        xn = x.numpy()
        record("onnxruntime (folded)", median_ms(lambda _: session.run(None, {"x": xn}), x, args.repeats))
    except ImportError:
        print("onnxruntime not installed: skipped")
    if not args.skip_compile:
        start = time.perf_counter()
        save_network(net, tmp / "aoti.pt2", fold=True, compile=True)
        compile_s = time.perf_counter() - start
        runner = load_network(tmp / "aoti.pt2")
        record(
            "AOTInductor (--compile --fold-bn)", median_ms(runner, x, args.repeats), {"compile_s": round(compile_s, 1)}
        )
    base = rows["eager"]["ms_per_batch"]
    for row in rows.values():
        row["speedup_vs_eager"] = round(base / row["ms_per_batch"], 2)
    out = {"machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
           "arch": str(net.arch), "batch": args.batch, "repeats": args.repeats, "formats": rows}  # fmt: skip
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
