"""Write an ImageNet-LT-shaped folder of textured JPEGs, for timing the image pipeline.

Not a dataset (the pixels carry no class signal): it has ImageNet's file sizes (500×375,
quality 90, about 100 KB each), the ``ImageNet_LT_{train,val,test}.txt`` lists and a
long-tailed class profile, so that ``bench cache imagenet-lt --measure N`` and
``bench run ... --dataset imagenet-lt`` can be timed where the real images are absent.

    python tools/fake_imagenet_lt.py /tmp/fake-imagenet --classes 100 --train 10000
"""

from __future__ import annotations

import argparse
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image


def _write(job: tuple[str, int]) -> None:
    path, seed = job
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (12, 16, 3)).astype(np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((500, 375), Image.BICUBIC), np.float32)
    pixels = np.clip(smooth + rng.normal(0, 18, smooth.shape), 0, 255).astype(np.uint8)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--train", type=int, default=10_000, help="training images in all")
    parser.add_argument("--eval", type=int, default=2, help="val and test images per class")
    parser.add_argument("--workers", type=int, default=16)
    args = parser.parse_args()
    c = args.classes
    weights = (1 / 256) ** (np.arange(c) / max(c - 1, 1))  # ImageNet-LT's 1280:5 profile
    counts = np.maximum(1, np.floor(weights / weights.sum() * args.train)).astype(int)
    jobs, lines = [], {"train": [], "val": [], "test": []}
    for label in range(c):
        wnid = f"n{label:08d}"
        for split, folder, n in (
            ("train", "train", counts[label]),
            ("val", "train", args.eval),
            ("test", "val", args.eval),
        ):
            for i in range(n):
                rel = f"{folder}/{wnid}/{wnid}_{split}_{i}.JPEG"
                jobs.append((str(args.root / rel), len(jobs)))
                lines[split].append(f"{rel} {label}")
    with Pool(args.workers) as pool:
        pool.map(_write, jobs, chunksize=64)
    for split, rows in lines.items():
        (args.root / f"ImageNet_LT_{split}.txt").write_text("\n".join(rows) + "\n")
    print(f"{len(jobs)} JPEGs, {sum(counts)} for training, under {args.root}")


if __name__ == "__main__":
    main()
