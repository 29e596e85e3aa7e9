"""Waterbirds-synth: shapes on land or water backgrounds with the Waterbirds group structure
(Sagawa et al. 2020, ``generate_waterbirds.py`` of kohpangwei/group_DRO), zero download.

The class ``y`` is the shape family (0 "landbird": square, triangle, star, cross; 1
"waterbird": circle, ellipse, heart, blob); the spurious attribute ``place`` is the background
(0 land: green/brown 1/f noise, 1 water: blue ripples). As in Waterbirds, the object is pasted
with its matte, ``out = obj·α + bg·(1−α)``, and the place agrees with the class for a fraction
``p_aligned`` = 0.95 of each training class and for half of each val/test class. Class 1 is
``waterbird_fraction`` (0.2321 = 1,113 / 4,795, Waterbirds' training share) of every split, and
the default split sizes are Waterbirds' (4,795 / 1,199 / 5,794). Counts are exact quotas
(rounded half up), so the four training groups (y, place) are Waterbirds' 3,498 / 184 / 56 /
1,057. Object colours come from one palette for both classes (independent of y). Images are
32×32 by default so that the default protocol trains in about a minute on 2 CPU cores
(``--set size=64`` for finer masks). Attributes: ``bias`` = place, ``aligned``,
``group`` = 2·y + place (Waterbirds' numbering), ``mask`` (uint8 object masks, α ≥ 0.5).
"""

from __future__ import annotations

import math
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
    Range,
    Split,
    register_dataset,
)
from benchmark.synthetic import composite, draw_shapes, fractal_noise, normal, tint, to_uint8, waves

FAMILIES = (("square", "triangle", "star", "cross"), ("circle", "ellipse", "blob"))
#: bird colours (RGB in [0, 1]), shared by both classes: white, black, grey, yellow, orange,
#: red, brown, pink
BIRD_COLORS = np.array(
    [(0.95, 0.95, 0.92), (0.1, 0.1, 0.1), (0.55, 0.55, 0.55), (0.95, 0.85, 0.2),
     (0.95, 0.55, 0.1), (0.8, 0.15, 0.12), (0.45, 0.28, 0.12), (0.95, 0.6, 0.7)]
)  # fmt: skip
LAND = (
    np.array([(0.12, 0.3, 0.08), (0.3, 0.22, 0.1)]),
    np.array([(0.5, 0.65, 0.25), (0.6, 0.5, 0.3)]),
)
WATER = (
    np.array([(0.05, 0.18, 0.4), (0.05, 0.3, 0.45)]),
    np.array([(0.45, 0.7, 0.9), (0.4, 0.8, 0.85)]),
)


def quotas(n: int, frac1: float, p_aligned: float) -> dict[tuple[int, int], int]:
    """Exact group sizes {(y, place): count} of a split of ``n`` images (rounded half up)."""
    n1 = math.floor(n * frac1 + 0.5)
    out = {}
    for y, n_y in ((0, n - n1), (1, n1)):
        aligned = math.floor(n_y * p_aligned + 0.5)
        out[(y, y)], out[(y, 1 - y)] = aligned, n_y - aligned
    return out


def backgrounds(place: np.ndarray, size: int, rng: np.random.RandomState) -> np.ndarray:
    """Land (place 0) or water (place 1) backgrounds, (N, 3, H, W) float in [0, 1]."""
    n = len(place)
    out = torch.empty(n, 3, size, size)
    for p, (low, high), make in ((0, LAND, fractal_noise), (1, WATER, waves)):
        idx = np.flatnonzero(place == p)
        if not len(idx):
            continue
        pick = rng.randint(len(low), size=len(idx))
        jitter = rng.uniform(-0.06, 0.06, (2, len(idx), 3))
        grey = make(rng, len(idx), size)
        out[torch.from_numpy(idx)] = tint(
            grey, np.clip(low[pick] + jitter[0], 0, 1), np.clip(high[pick] + jitter[1], 0, 1)
        )
    return out


def render(y: np.ndarray, place: np.ndarray, size: int, rng: np.random.RandomState):
    """Images (N, 3, H, W) uint8 and masks (N, H, W) uint8 for classes ``y`` on ``place``."""
    n = len(y)
    pick = rng.random_sample(n)
    names = [FAMILIES[c][int(u * len(FAMILIES[c]))] for c, u in zip(y, pick)]
    alpha = draw_shapes(names, size, rng, scale=(0.28, 0.4))
    colour = np.clip(
        BIRD_COLORS[rng.randint(len(BIRD_COLORS), size=n)] + rng.uniform(-0.08, 0.08, (n, 3)), 0, 1
    )
    shade = fractal_noise(rng, n, size, 2.5)
    bird = tint(shade, colour * 0.75, np.minimum(colour * 1.15 + 0.05, 1))
    image = composite(bird, backgrounds(place, size, rng), alpha)
    noise = normal(rng, image.shape, 0.02)
    return to_uint8(image + noise), (alpha >= 0.5).to(torch.uint8)


@register_dataset("waterbirds-synth")
class WaterbirdsSynth(Dataset):
    """Shape family vs. land/water background: 95% aligned in training, 50% in val/test."""

    track = "bias"
    version = "1"
    attrs = ("bias", "aligned", "group", "mask")
    options = {
        "p_aligned": HParam(
            0.95, help="training P(place = class) per class (Waterbirds: 0.95)", valid=UNIT
        ),
        "eval_p_aligned": HParam(
            0.5, help="val/test P(place = class) (Waterbirds: 0.5)", valid=UNIT
        ),
        "waterbird_fraction": HParam(0.2321, help="fraction of class 1 in every split", valid=UNIT),
        "sizes": HParam(
            [4795, 1199, 5794],
            help="train/val/test images (Waterbirds' sizes)",
            valid=Each(AT_LEAST_ONE, 3),
        ),
        "size": HParam(32, help="image side in pixels", valid=Range(16)),
        "seed": HParam(0, help="generator seed", valid=SEED),
    }
    protocol = {
        "backbone": "small-cnn",
        "epochs": 10,
        "batch_size": 128,
        "optimizer": "adam",
        "lr": 1e-3,
        "weight_decay": 1e-4,
        "schedule": "cosine",
        "augment": "flip",
    }
    tiny = {"sizes": [24, 8, 8], "size": 24}

    def build(self, options: Mapping[str, Any], data_root: Path | None) -> Bundle:
        for key in ("p_aligned", "eval_p_aligned", "waterbird_fraction"):
            if not 0.0 <= options[key] <= 1.0:
                raise BenchError(f"waterbirds-synth: {key} must be in [0, 1]")
        sizes = [int(v) for v in options["sizes"]]
        if len(sizes) != 3 or min(sizes) < 1:
            raise BenchError(
                "waterbirds-synth: sizes must be three positive counts (train, val, test)"
            )
        if options["size"] < 16:
            raise BenchError("waterbirds-synth: size must be at least 16 pixels")
        rng = np.random.RandomState(options["seed"])
        splits = {}
        for name, n, p in zip(
            ("train", "val", "test"),
            sizes,
            (options["p_aligned"], options["eval_p_aligned"], options["eval_p_aligned"]),
        ):
            q = quotas(n, float(options["waterbird_fraction"]), float(p))
            y = np.concatenate([np.full(c, g[0]) for g, c in q.items()]).astype(np.int64)
            place = np.concatenate([np.full(c, g[1]) for g, c in q.items()]).astype(np.int64)
            order = rng.permutation(len(y))
            y, place = y[order], place[order]
            images, masks = render(y, place, int(options["size"]), rng)
            splits[name] = Split(
                images,
                torch.from_numpy(y),
                {
                    "bias": torch.from_numpy(place),
                    "aligned": torch.from_numpy(place == y),
                    "group": torch.from_numpy(2 * y + place),
                    "mask": masks,
                },
            )
        return Bundle(
            name=self.name,
            track=self.track,
            num_classes=2,
            splits=splits,
            version=self.version,
            options=dict(options),
            mean=(0.4, 0.45, 0.4),
            std=(0.25, 0.25, 0.25),
            class_names=["landbird", "waterbird"],
        )
