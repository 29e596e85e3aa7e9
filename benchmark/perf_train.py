"""``bench perf train``: training throughput of a reference-style loop and of the harness loop,
side by side in one process, on the same backbone, batch size and synthetic data.

- reference: the usual PyTorch recipe — uint8 arrays turned into PIL images in ``__getitem__``,
  torchvision ``RandomCrop(pad H/8)`` + ``RandomHorizontalFlip`` + ``ToTensor`` + ``Normalize``
  in DataLoader worker processes, fp32, one host-to-device copy per batch;
- harness: ``Trainer.fit`` as ``bench run`` uses it — uint8 data resident on the device,
  augmentation on the device, no host synchronisation per step; on CUDA also bf16 autocast,
  channels_last and the ``--fast`` path (``torch.compile`` and/or one CUDA graph per step).

Both train the same ``ce`` model (backbone + bias-free linear head) with SGD; the first epoch
(``--warmup`` steps for the reference loop) is excluded from the timing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import torch
import torch.nn.functional as F

from benchmark.errors import BenchError


def add_train(targets: Any, common: argparse.ArgumentParser) -> None:
    """Register ``train`` among the ``bench perf`` targets (``add_<target>(targets, common)``)."""
    p = targets.add_parser(
        "train",
        parents=[common],
        help="training throughput: reference-style loop vs the harness loop",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="example: bench perf train --backbone resnet32 --batch-size 128 --steps 200",
    )
    p.add_argument("--backbone", default="resnet32", help="backbone name (default resnet32)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=100, help="timed steps per loop")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps of the reference loop")
    p.add_argument("--size", type=int, default=32, help="image side (default 32, CIFAR)")
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--workers", type=int, default=None, help="reference DataLoader workers")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    p.add_argument(
        "--fast",
        default="auto",
        choices=("auto", "off", "compile", "graph", "compile-graph"),
        help="harness path on CUDA (auto: compile-graph on CUDA, off on the CPU)",
    )
    p.add_argument("--only", choices=("reference", "harness"), help="run one loop only")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=main)


def _data(args: argparse.Namespace, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    shape = (n, args.channels, args.size, args.size)
    x = torch.randint(0, 256, shape, dtype=torch.uint8, generator=gen)
    return x, torch.randint(0, args.classes, (n,), generator=gen)


class _PILDataset(torch.utils.data.Dataset):
    """CIFAR-style dataset: uint8 HWC arrays -> PIL image -> torchvision transforms."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, size: int, channels: int) -> None:
        from torchvision import transforms as T

        self.x = x.permute(0, 2, 3, 1).numpy()
        self.y = y.tolist()
        mean, std = (0.5,) * channels, (0.25,) * channels
        self.transform = T.Compose(
            [
                T.RandomCrop(size, padding=max(1, size // 8)),
                T.RandomHorizontalFlip(),
                T.ToTensor(),
                T.Normalize(mean, std),
            ]
        )

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        img = self.x[i]
        img = Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)
        return self.transform(img), self.y[i]


def reference_loop(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """PIL transforms in DataLoader workers, fp32: images/s over ``args.steps`` steps."""
    from torch import nn

    from benchmark.backbones import build_backbone
    from benchmark.method import Classifier
    from benchmark.progress import progress_bar

    bs, total = args.batch_size, args.warmup + args.steps
    x, y = _data(args, bs * total)
    workers = args.workers if args.workers is not None else min(8, os.cpu_count() or 1)
    loader = torch.utils.data.DataLoader(
        _PILDataset(x, y, args.size, args.channels),
        batch_size=bs,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )
    backbone = build_backbone(args.backbone, (args.channels, args.size, args.size))
    model = Classifier(backbone, nn.Linear(backbone.feature_dim, args.classes, False)).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    model.train()
    start = None
    steps = 0
    bar = progress_bar(loader, desc="reference loop", unit="step", enabled=not args.quiet_bars)
    for i, (xb, yb) in enumerate(bar):
        if i == args.warmup:
            _sync(device)
            start = time.perf_counter()
        xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps += i >= args.warmup
    _sync(device)
    seconds = time.perf_counter() - start
    return {
        "loop": "reference",
        "what": f"PIL + torchvision in {workers} DataLoader workers, fp32",
        "images_per_s": steps * bs / seconds,
        "ms_per_step": 1000 * seconds / steps,
        "steps": steps,
    }


def harness_loop(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """``Trainer.fit`` on device-resident uint8 data: the second epoch's images/s."""
    from benchmark.dataset import DatasetInfo, Split
    from benchmark.method import METHODS
    from benchmark.plugins import load_plugins
    from benchmark.training import PROTOCOL, Trainer

    load_plugins()
    fast = (
        args.fast if args.fast != "auto" else ("compile-graph" if device.type == "cuda" else "off")
    )
    bs = args.batch_size
    x, y = _data(args, bs * args.steps)
    info = DatasetInfo(
        "perf", "longtail", args.classes, tuple(x.shape[1:]), (0.5,) * args.channels,
        (0.25,) * args.channels, torch.bincount(y, minlength=args.classes), (), "perf",
    )  # fmt: skip
    hp = {k: h.default for k, h in PROTOCOL.items()}
    hp.update(backbone=args.backbone, epochs=2, batch_size=bs, lr=0.05, schedule="constant")
    hp.update(augment="crop-flip")
    method = METHODS.get("ce")(info, hp, device)
    method.setup()
    trainer = Trainer(device, seed=0, progress=not args.quiet_bars, fast=fast)
    method.fit(Split(x, y), trainer)
    timed = trainer.history[-1]
    precision = "bf16 autocast, channels_last" if device.type == "cuda" else "fp32"
    return {
        "loop": "harness",
        "what": f"uint8 on {device.type}, augmentation on device, {precision}, fast={fast}",
        "images_per_s": timed["images"] / timed["seconds"],
        "ms_per_step": 1000 * timed["seconds"] / args.steps,
        "steps": args.steps,
        "first_epoch_s": trainer.history[0]["seconds"],
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(args: argparse.Namespace) -> int:
    import json

    from tabulate import tabulate

    from benchmark.device import select_device

    if args.batch_size < 1 or args.steps < 1 or args.warmup < 0:
        raise BenchError("--batch-size and --steps must be positive, --warmup non-negative")
    if args.channels not in (1, 3):
        raise BenchError("--channels must be 1 or 3")
    if args.threads is not None:
        if args.threads < 1:
            raise BenchError("--threads must be at least 1")
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    args.quiet_bars = args.json
    rows = []
    if args.only != "harness":
        rows.append(reference_loop(args, device))
    if args.only != "reference":
        rows.append(harness_loop(args, device))
    base = rows[0]["images_per_s"]
    for r in rows:
        r["speedup"] = r["images_per_s"] / base
    setup = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch_threads": torch.get_num_threads(),
        "backbone": args.backbone,
        "batch_size": args.batch_size,
        "input": [args.channels, args.size, args.size],
    }
    if args.json:
        print(json.dumps({"setup": setup, "loops": rows}, indent=1))
        return 0
    print(
        f"training throughput: {args.backbone}, batch {args.batch_size}, "
        f"{args.channels}×{args.size}×{args.size}, {setup['device']} "
        f"({setup['torch_threads']} torch threads)",
        file=sys.stdout,
    )
    table = [
        [r["loop"], r["what"], f"{r['images_per_s']:,.0f}", f"{r['ms_per_step']:.1f}",
         f"{r['speedup']:.2f}×"]
        for r in rows
    ]  # fmt: skip
    print(tabulate(table, headers=["loop", "how", "images/s", "ms/step", "vs first"]))
    return 0
