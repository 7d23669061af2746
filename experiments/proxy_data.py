"""Issue 7 proxy data: a fixed, class-balanced subset of the JPEG CIFAR-10 copy in ImageFolder layout.

Extracts ``../shared/data/cifar10-jpeg/cifar10-jpeg.tar.gz`` (once) and links, per class, the first
``--per-class`` training images (by file name: 0000.jpg, 0001.jpg, ...) and all 1,000 test images into
``data/cifar10-proxy/{train,test}/<class>/`` (``data/`` is git-ignored). ``khnet train --dataset
imagefolder:data/cifar10-proxy`` then holds out a seeded 10% of those training images as the ``valid`` split
(the default ``valid_fraction``), trains on the rest and tests on the full 10,000-image test set.

Run:  python experiments/proxy_data.py [--per-class 1100] [--shared ../shared/data]
"""

from __future__ import annotations

import argparse
import os
import sys
import tarfile
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=1100, help="training images per class")
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("data"))
    args = parser.parse_args()
    archive = args.shared / "cifar10-jpeg" / "cifar10-jpeg.tar.gz"
    full = args.out / "cifar10-jpeg"
    if not (full / "train").is_dir():
        if not archive.is_file():
            sys.exit(f"error: {archive} not found; pass --shared <folder holding cifar10-jpeg/cifar10-jpeg.tar.gz>")
        args.out.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            tar.extractall(args.out, filter="data")
    proxy = args.out / "cifar10-proxy"
    for split, limit in (("train", args.per_class), ("test", None)):
        for cls in sorted(d.name for d in (full / split).iterdir() if d.is_dir()):
            files = sorted((full / split / cls).glob("*.jpg"))[:limit]
            if limit is not None and len(files) < limit:
                sys.exit(f"error: {full / split / cls} has {len(files)} images, fewer than --per-class {limit}")
            target = proxy / split / cls
            target.mkdir(parents=True, exist_ok=True)
            for old in target.iterdir():
                old.unlink()
            for f in files:
                os.symlink(os.path.relpath(f, target), target / f.name)
    counts = {s: sum(1 for _ in (proxy / s).rglob("*.jpg")) for s in ("train", "test")}
    print(f"{proxy}: {counts['train']} training images ({args.per_class} per class), {counts['test']} test images")


if __name__ == "__main__":
    main()
