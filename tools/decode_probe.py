"""Where the time of the GPU decode path goes, on N JPEGs of a folder (a GPU machine's probe).

python tools/decode_probe.py /tmp/fake-imagenet/train 2048
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from torchvision.io import ImageReadMode, decode_jpeg

from benchmark.imagefiles import Augment, Geometry
from benchmark.streaming import decode_batch, device_crop


def timed(label: str, fn, n: int) -> None:
    fn()
    torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    s = time.perf_counter() - t
    print(f"{label:<48} {n / s:10,.0f} images/s")


def main() -> None:
    folder, n = Path(sys.argv[1]), int(sys.argv[2])
    files = sorted(folder.rglob("*.JPEG"))[:n]
    datas = [torch.frombuffer(bytearray(f.read_bytes()), dtype=torch.uint8) for f in files]
    dev = torch.device("cuda")
    batches = [datas[i : i + 256] for i in range(0, len(datas), 256)]

    def raw() -> None:
        for b in batches:
            decode_jpeg(b, mode=ImageReadMode.RGB, device=dev)

    def raw_one() -> None:
        for d in datas:
            decode_jpeg(d, mode=ImageReadMode.RGB, device=dev)

    def ours() -> None:
        for b in batches:
            decode_batch(b, dev)

    decoded = [img for b in batches for img in decode_batch(b, dev)]
    import numpy as np

    augs = [Augment((10, 10, 300, 250), True, np.ones(3), np.arange(3)) for _ in decoded]
    geo = Geometry()

    def crops() -> None:
        torch.stack([device_crop(i, a, geo) for i, a in zip(decoded, augs)])

    timed("decode_jpeg batched lists of 256 (raw)", raw, len(datas))
    timed("decode_jpeg one at a time (raw)", raw_one, len(datas))
    timed("benchmark.streaming.decode_batch", ours, len(datas))
    try:
        timed("device_crop per image + stack", crops, len(datas))
    except Exception as exc:
        print("crop probe failed:", exc)


if __name__ == "__main__":
    main()
