"""Build khnet's shipped CIFAR-10 sample from ../shared/data/cifar10-jpeg/cifar10-jpeg.tar.gz.

Takes, for each of the 10 classes in label order, the first 600 training and the first 100 test JPEGs
by file name, and stores their bytes untouched (JPEG q75, as in the copy) in khnet/_data/cifar10_sample.npz.
Same input -> same output.

Run:  python scripts/make_sample.py [--tar PATH] [--train-per-class 600] [--test-per-class 100]
"""

from __future__ import annotations

import argparse
import hashlib
import tarfile
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SHA256 = "efac85c8ed52f4ead1e1f1b670d8dcf435d551fccebdd8b6365e0a01a504f3a4"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tar", type=Path, default=ROOT.parent / "shared/data/cifar10-jpeg/cifar10-jpeg.tar.gz")
    parser.add_argument("--train-per-class", type=int, default=600)
    parser.add_argument("--test-per-class", type=int, default=100)
    parser.add_argument("--out", type=Path, default=ROOT / "khnet/_data/cifar10_sample.npz")
    args = parser.parse_args()
    digest = hashlib.sha256(args.tar.read_bytes()).hexdigest()
    if digest != SHA256:
        raise SystemExit(f"{args.tar}: sha256 {digest} is not the JPEG CIFAR-10 copy's {SHA256}")
    wanted = {"train": args.train_per_class, "test": args.test_per_class}
    found: dict[tuple[str, int], dict[str, bytes]] = {}
    with tarfile.open(args.tar) as tar:
        for member in tar:
            parts = member.name.split("/")
            if member.isfile() and len(parts) == 4 and parts[1] in wanted and parts[2] in CLASSES:
                found.setdefault((parts[1], CLASSES.index(parts[2])), {})[parts[3]] = tar.extractfile(member).read()
    arrays = {}
    for split, per_class in wanted.items():
        blobs, labels = [], []
        for label in range(len(CLASSES)):
            files = found[(split, label)]
            for name in sorted(files)[:per_class]:
                blobs.append(files[name])
                labels.append(label)
        arrays[f"{split}_jpeg"] = np.frombuffer(b"".join(blobs), dtype=np.uint8)
        arrays[f"{split}_offsets"] = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
        arrays[f"{split}_labels"] = np.asarray(labels, dtype=np.uint8)
    # np.savez stamps the current time into the zip; write the members with a fixed date instead.
    with zipfile.ZipFile(args.out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for key in sorted(arrays):
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w") as f:
                np.lib.format.write_array(f, arrays[key], allow_pickle=False)
    size = args.out.stat().st_size
    print(f"wrote {args.out} ({size / 1e6:.2f} MB): " + ", ".join(f"{s} {len(arrays[f'{s}_labels'])}" for s in wanted))


if __name__ == "__main__":
    main()
