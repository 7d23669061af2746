"""Build the NAS-Bench-201 ground truth that khnet ships, from ../shared/data/nb201/nb201.csv.

Writes, reproducibly (same input -> same bytes):
  khnet/_data/nb201_order.u16  benchmark index -> base-5 op code (uint16 little-endian, 15,625 entries)
  khnet/_data/nb201.csv.xz     per index: accuracies (percent), published FLOPs/params, isomorphism class

Run:  python scripts/make_groundtruth.py [--csv PATH]
"""

from __future__ import annotations

import argparse
import csv
import io
import lzma
import sys
from array import array
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from khnet.space import NUM_ARCHS, OP_NAMES, Arch  # noqa: E402

KEEP = [
    "cifar10_test",
    "cifar10_valid_valid",
    "cifar100_valid",
    "cifar100_test",
    "cifar100_ori_test",
    "imagenet16_valid",
    "imagenet16_test",
    "imagenet16_ori_test",
    "cifar10_test_12ep",
    "cifar10_valid_valid_12ep",
    "cifar100_valid_12ep",
    "cifar100_test_12ep",
    "imagenet16_valid_12ep",
    "imagenet16_test_12ep",
    "flops_c10_m",
    "flops_c100_m",
    "flops_in16_m",
    "params_c10_mb",
    "params_c100_mb",
    "params_in16_mb",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=ROOT.parent / "shared/data/nb201/nb201.csv")
    args = parser.parse_args()
    with args.csv.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if len(rows) != NUM_ARCHS:
        sys.exit(f"{args.csv}: expected {NUM_ARCHS} rows, found {len(rows)}")

    codes = array("H")
    first_of_class: dict[str, int] = {}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["arch_index", "arch", "iso_class", *KEEP])
    for i, row in enumerate(rows):
        assert int(row["arch_index"]) == i, f"row {i} has arch_index {row['arch_index']}"
        arch = Arch.parse(row["arch"])
        code = 0
        for op in arch.op_ids:
            code = code * len(OP_NAMES) + op
        codes.append(code)
        iso = first_of_class.setdefault(row["unique_str"], i)
        writer.writerow([i, str(arch), iso, *(row[k] for k in KEEP)])
    if sys.byteorder != "little":
        codes.byteswap()
    data = ROOT / "khnet/_data"
    (data / "nb201_order.u16").write_bytes(codes.tobytes())
    blob = lzma.compress(out.getvalue().encode(), preset=9 | lzma.PRESET_EXTREME)
    (data / "nb201.csv.xz").write_bytes(blob)
    print(
        f"wrote {data}/nb201_order.u16 ({len(codes) * 2} bytes) and nb201.csv.xz ({len(blob)} bytes); "
        f"{len(first_of_class)} isomorphism classes"
    )


if __name__ == "__main__":
    main()
