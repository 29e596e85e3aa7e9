"""Does a ViT classifier learn ``objects-masks`` within a CPU budget? A scratch loop of
``erm``'s recipe (Adam with L2 weight decay, per-epoch linear warm-up from lr/3 then cosine,
random horizontal flips, the dataset's mean/std; ``Trainer`` and ``lr_factor``'s rules) that
prints the test accuracy after every epoch and stops at ``--cpu`` process CPU seconds.

OMP_NUM_THREADS=1 python tools/vit_probe.py --backbone vit-micro --lr 5e-4 --warmup 2 --epochs 25
OMP_NUM_THREADS=1 python tools/vit_probe.py --backbone vit-tiny --lr 1e-3 --warmup 1 --epochs 4
"""

from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F

from benchmark.backbones import build_backbone
from benchmark.data import load_bundle
from benchmark.method import Classifier
from benchmark.plugins import load_plugins


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="vit-micro")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--warmup", type=int, default=1, help="warm-up epochs (from lr/3)")
    p.add_argument("--cpu", type=float, default=480, help="process CPU seconds budget")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    load_plugins()
    torch.manual_seed(a.seed)
    bundle = load_bundle("objects-masks")
    train, test = bundle.splits["train"], bundle.splits["test"]
    mean = torch.tensor(bundle.mean).view(1, -1, 1, 1)
    std = torch.tensor(bundle.std).view(1, -1, 1, 1)

    def norm(x: torch.Tensor) -> torch.Tensor:
        return (x.float() / 255 - mean) / std

    x_test = norm(test.inputs)
    backbone = build_backbone(a.backbone, tuple(train.inputs.shape[1:]))
    model = Classifier(backbone, torch.nn.Linear(backbone.feature_dim, bundle.num_classes))
    opt = torch.optim.Adam(model.parameters(), lr=a.lr, weight_decay=a.weight_decay)

    def factor(epoch: int) -> float:
        if epoch < a.warmup:
            alpha = epoch / a.warmup
            return (1 / 3) * (1 - alpha) + alpha
        return 0.5 * (1 + math.cos(math.pi * epoch / a.epochs))

    gen = torch.Generator().manual_seed(a.seed)
    t0 = time.process_time()
    print(vars(a), "parameters", sum(q.numel() for q in model.parameters()), flush=True)
    for epoch in range(a.epochs):
        for group in opt.param_groups:
            group["lr"] = a.lr * factor(epoch)
        model.train()
        perm = torch.randperm(len(train.labels), generator=gen)
        total, seen = 0.0, 0
        for k in range(0, len(perm) - a.batch_size + 1, a.batch_size):
            idx = perm[k : k + a.batch_size]
            x, y = norm(train.inputs[idx]), train.labels[idx]
            flip = (torch.rand(len(x), generator=gen) < 0.5).view(-1, 1, 1, 1)
            x = torch.where(flip, x.flip(3), x)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, seen = total + float(loss.detach()) * len(y), seen + len(y)
            if time.process_time() - t0 > a.cpu:
                break
        model.eval()
        with torch.no_grad():
            acc = (model(x_test).argmax(1) == test.labels).float().mean().item()
        print(
            f"epoch {epoch} steps {seen // a.batch_size} loss {total / seen:.3f} "
            f"test {100 * acc:.1f}% cpu {time.process_time() - t0:.0f} s",
            flush=True,
        )
        if time.process_time() - t0 > a.cpu:
            break


if __name__ == "__main__":
    main()
