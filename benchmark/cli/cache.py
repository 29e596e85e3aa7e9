"""``bench cache DATASET [--data-root DIR] [--set k=v] [--measure N]``: pre-decode images.

For datasets read lazily from image files (ImageNet-LT, Places-LT, iNaturalist, CUB,
Waterbirds, ImageNet-S), decode every image once, resized like the evaluation transform, into
a memory-mapped frame cache under ``$BENCH_CACHE/frames/``; ``bench run`` then reads from it
automatically. ``--measure N`` times the decode paths on N training images.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from benchmark.cli.checks import at_least
from benchmark.hparams import parse_assignments


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "cache",
        parents=[common],
        help="pre-decode the images of an on-disk dataset (fast data path)",
        description="Decode every image of a dataset read from image files once, resized like "
        "the evaluation transform, into a memory-mapped cache that bench run uses "
        "automatically; optionally measure images/s of each decode path.",
        epilog="example: bench cache imagenet-lt --data-root /data --measure 2000",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dataset", help="dataset name (bench list datasets)")
    p.add_argument("--data-root", help="root folder of real datasets (else $BENCH_DATA)")
    p.add_argument(
        "--set",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="dataset option, as for bench run (e.g. resize=256)",
    )
    p.add_argument("--split", nargs="+", help="only these splits (default: all)")
    p.add_argument(
        "--workers",
        type=at_least(0),
        help="decoding processes, 0: in this process (default: $BENCH_WORKERS or cores)",
    )
    p.add_argument(
        "--measure",
        type=at_least(0),
        default=0,
        metavar="N",
        help="time each decode path on N training images (after building)",
    )
    p.add_argument("--no-build", action="store_true", help="only measure; build nothing")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    import torch
    from tabulate import tabulate

    from benchmark.data import load_bundle
    from benchmark.errors import BenchError
    from benchmark.imagefiles import FrameCache, ImageFiles, default_workers
    from benchmark.streaming import measure

    options = {k.removeprefix("dataset."): v for k, v in parse_assignments(args.set).items()}
    bundle = load_bundle(args.dataset, options, root=args.data_root)
    lazy = {n: s.inputs for n, s in bundle.splits.items() if isinstance(s.inputs, ImageFiles)}
    if args.split:
        unknown = sorted(set(args.split) - set(bundle.splits))
        if unknown:
            raise BenchError(
                f"{args.dataset} has no split {unknown[0]!r}: {', '.join(bundle.splits)}"
            )
        lazy = {n: x for n, x in lazy.items() if n in args.split}
    if not lazy:
        print(f"{args.dataset}: its images are held in memory; there is nothing to cache")
        return 0
    workers = default_workers() if args.workers is None else args.workers
    rows = []
    for name, inputs in lazy.items():
        if args.no_build:
            cache, seconds = FrameCache.find(inputs), 0.0
        else:
            cache, seconds = FrameCache.build(inputs, workers=workers, progress=not args.quiet)
        rows.append(
            {
                "split": name,
                "images": len(inputs.files.paths),
                "cached GB": round(cache.nbytes() / 1e9, 3) if cache else None,
                "build s": round(seconds, 1) if seconds else "(reused)" if cache else "-",
                "images/s": round(len(inputs.files.paths) / seconds) if seconds else "",
                "folder": str(cache.folder) if cache else "",
            }
        )
    speeds = []
    if args.measure:
        name = "train" if "train" in lazy else next(iter(lazy))
        inputs = lazy[name]
        cuda = torch.cuda.is_available()
        device = torch.device("cuda" if cuda else "cpu")
        paths = ["cpu"] + (["gpu"] if cuda else [])
        paths += ["cache"] if FrameCache.find(inputs) is not None else []
        # without a GPU, also time the workers' share of the CUDA setting (where the device
        # resizes, flips and jitters, which is not timed here)
        settings = [("device", "device")] if cuda else [("worker", "workers")]
        settings += [] if cuda else [("skip", "workers only (device part not run)")]
        for path in paths:
            for ops, label in settings:
                if path == "gpu" and ops != "device":
                    continue
                speed = measure(inputs, path, device, images=args.measure, workers=workers, ops=ops)
                speeds.append(
                    {
                        "path": path,
                        "resize + jitter by": label,
                        "images": min(args.measure, len(inputs)),
                        "workers": workers,
                        "device": str(device),
                        "images/s": round(speed, 1),
                    }
                )
    if args.json:
        print(json.dumps({"caches": rows, "measured": speeds}, indent=1))
        return 0
    print(tabulate(rows, headers="keys", tablefmt="github"))
    if speeds:
        print()
        print(f"training batches of {name} delivered to the device (decode, crop, flip, jitter):")
        print(tabulate(speeds, headers="keys", tablefmt="github"))
    return 0
