"""Stage timings and finiteness of the GPU decode path's batches (a GPU machine's probe).

python tools/stream_probe.py /tmp/fake-imagenet 4096 [sync]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from benchmark.data import load_bundle
from benchmark.streaming import Stream, _chunks, color_jitter, decode_batch, device_crop


def main() -> None:
    from benchmark.plugins import load_plugins

    load_plugins()
    root, n = Path(sys.argv[1]), int(sys.argv[2])
    sync = "sync" in sys.argv[3:]
    clone = "clone" in sys.argv[3:]
    nw = int(next((a.split("=")[1] for a in sys.argv[3:] if a.startswith("workers=")), 16))
    inputs = load_bundle("imagenet-lt", {}, root=root).splits["train"].inputs
    dev = torch.device("cuda")
    stream = Stream(inputs, "gpu", dev, workers=nw)
    g = inputs.geometry
    t = {"wait": 0.0, "decode": 0.0, "crop": 0.0, "jitter": 0.0}
    rows = _chunks(min(n, len(inputs)), 256)
    stream.plan.batches = [[(p, 0) for p in row] for row in rows]
    bad = 0
    per_batch: list[float] = []
    start = time.perf_counter()
    mark = start
    for batch in stream.loader:
        now = time.perf_counter()
        t["wait"] += now - mark
        datas = [d.clone() for d in batch["data"]] if clone else batch["data"]
        images = decode_batch(datas, dev)
        if sync:
            torch.cuda.synchronize()
        torch.cuda.synchronize()
        t1 = time.perf_counter()
        t["decode"] += t1 - now
        per_batch.append((t1 - now) / len(datas))
        shapes_ok = all(
            a.box is None
            or (a.box[0] + a.box[2] <= i.shape[2] + 1 and a.box[1] + a.box[3] <= i.shape[1] + 1)
            for i, a in zip(images, batch["aug"])
        )
        x = torch.stack([device_crop(i, a, g) for i, a in zip(images, batch["aug"])])
        torch.cuda.synchronize()
        t2 = time.perf_counter()
        t["crop"] += t2 - t1
        y = color_jitter(x, batch["jitter"], batch["order"])
        torch.cuda.synchronize()
        t3 = time.perf_counter()
        t["jitter"] += t3 - t2
        mark = t3
        fx, fy = bool(torch.isfinite(x).all()), bool(torch.isfinite(y).all())
        if not (fx and fy and shapes_ok) and bad < 3:
            bad += 1
            i = int((~torch.isfinite(y)).flatten(1).any(1).nonzero()[0]) if not fy else -1
            print(
                "bad batch: crop finite",
                fx,
                "jitter finite",
                fy,
                "boxes inside",
                shapes_ok,
                "x range",
                float(x.nan_to_num().min()),
                float(x.nan_to_num().max()),
                "first bad",
                i,
                batch["aug"][i] if i >= 0 else "",
                batch["jitter"][i] if i >= 0 else "",
            )
    total = time.perf_counter() - start
    imgs = sum(len(r) for r in rows)
    steady = sorted(per_batch[2:])[len(per_batch[2:]) // 2] if len(per_batch) > 3 else 0
    print("decode per batch (s/image, first three):", [round(v, 5) for v in per_batch[:3]])
    if steady:
        print(f"decode after the first two batches: median {1 / steady:,.0f} images/s")
    print(
        f"sync={sync} clone={clone} workers={nw} {imgs / total:,.0f} images/s;",
        {k: round(v, 2) for k, v in t.items()},
        f"total {total:.2f} s",
    )


if __name__ == "__main__":
    main()
