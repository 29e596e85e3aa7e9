"""Waterbirds-synth: shapes on land or water backgrounds with the Waterbirds group structure
(Sagawa et al. 2020, ``generate_waterbirds.py`` of kohpangwei/group_DRO), zero download.

The class ``y`` is the shape family (0 "landbird": square, triangle, star, cross; 1
"waterbird": circle, ellipse, blob); the spurious attribute ``place`` is the background
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

Two evaluation-only splits (version 2; not in Waterbirds), each drawn from its own generator
(``RandomState([seed, 1])`` and ``[seed, 2]``), so train / val / test are the images of
version 1 bit for bit, whatever their sizes:

- ``ood`` (``n_ood`` = 1,000 images): shapes no class has (diamond, hexagon, heart), half on
  land, half on water, with the birds' palette; labels −1, paired with ``test`` as every OoD
  split (``pair_with``: the runner scores test + ood with ``is_ood``, AUROC etc. under
  ``<metric>@ood``). Attribute ``bias`` (place). A semantic (near) OoD set: only the shape
  is new.
- ``shift`` (``n_shift`` = 1,000 images): the two classes (same families, same class share) on
  backgrounds no training image has (covariate shift: the label is known, the background
  is new): family 0, stripes or polka dots tinted sand or snow; family 1, checkerboards
  tinted plum or slate. The family takes the place's role in the attributes (``bias`` =
  family, ``aligned`` = family == y at ``eval_p_aligned``, ``group`` = 2·y + family), so
  the bias metrics and methods that read the place at inference (``mdn``) work on it, but
  neither family is land or water. Scored like ``test`` (``acc@shift``, ``ece@shift``,
  ``worst_group@shift``, ...); no masks, so the explanation metrics stay on ``test``.
  Attribute ``background`` (0 stripes, 1 checkerboard, 2 dots).

1,000 images each keep the evaluation cheap (an explainer computes a map per image of every
evaluated split) while an AUROC or an accuracy over 1,000 images is known to about ±1.5 points.
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
from benchmark.synthetic import (
    checker,
    composite,
    dots,
    draw_shapes,
    fractal_noise,
    normal,
    stripes,
    tint,
    to_uint8,
    waves,
)

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
#: shapes of the OoD split: no training class has them (``benchmark.synthetic.SHAPES`` minus
#: both families)
OOD_SHAPES = ("diamond", "hexagon", "heart")
#: the covariate-shift split's two background families (its ``bias``): textures and colours
#: (dark, light) that occur in no train/val/test image. Family 0: sand or snow stripes / polka
#: dots; family 1: plum or slate checkerboards
SHIFT_FAMILIES = (
    (
        ("stripes", "dots"),
        np.array([(0.7, 0.55, 0.3), (0.7, 0.72, 0.78)]),
        np.array([(0.95, 0.85, 0.6), (0.97, 0.97, 1.0)]),
    ),
    (
        ("checker",),
        np.array([(0.3, 0.05, 0.25), (0.2, 0.2, 0.26)]),
        np.array([(0.8, 0.3, 0.5), (0.55, 0.55, 0.62)]),
    ),
)
SHIFT_KINDS = {"stripes": (0, stripes), "checker": (1, checker), "dots": (2, dots)}
#: offsets of the OoD and covariate-shift splits' own generators: ``RandomState([seed, k])``
OOD_STREAM, SHIFT_STREAM = 1, 2


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


def shift_backgrounds(
    family: np.ndarray, size: int, rng: np.random.RandomState
) -> tuple[torch.Tensor, np.ndarray]:
    """Backgrounds no training image has (covariate shift), of ``family`` 0 or 1 per image
    (``SHIFT_FAMILIES``): (N, 3, H, W) float in [0, 1] and the texture code per image
    (0 stripes, 1 checkerboard, 2 polka dots)."""
    n = len(family)
    out = torch.empty(n, 3, size, size)
    code = np.zeros(n, dtype=np.int64)
    for f, (kinds, low, high) in enumerate(SHIFT_FAMILIES):
        idx = np.flatnonzero(family == f)
        if not len(idx):
            continue
        kind = rng.randint(len(kinds), size=len(idx))
        pick = rng.randint(len(low), size=len(idx))
        jitter = rng.uniform(-0.05, 0.05, (2, len(idx), 3))
        grey = torch.empty(len(idx), size, size)
        for k, name in enumerate(kinds):
            sel = np.flatnonzero(kind == k)
            code[idx[sel]], make = SHIFT_KINDS[name]
            if len(sel):
                grey[torch.from_numpy(sel)] = make(rng, len(sel), size)
        out[torch.from_numpy(idx)] = tint(
            grey, np.clip(low[pick] + jitter[0], 0, 1), np.clip(high[pick] + jitter[1], 0, 1)
        )
    return out, code


def paint(names: list[str], size: int, rng: np.random.RandomState, background: Any):
    """Birds of shapes ``names`` pasted on ``background(rng)`` ((N, 3, H, W) float): images
    (N, 3, H, W) uint8 and masks (N, H, W) uint8 (α ≥ 0.5)."""
    n = len(names)
    alpha = draw_shapes(names, size, rng, scale=(0.28, 0.4))
    colour = np.clip(
        BIRD_COLORS[rng.randint(len(BIRD_COLORS), size=n)] + rng.uniform(-0.08, 0.08, (n, 3)), 0, 1
    )
    shade = fractal_noise(rng, n, size, 2.5)
    bird = tint(shade, colour * 0.75, np.minimum(colour * 1.15 + 0.05, 1))
    image = composite(bird, background(rng), alpha)
    noise = normal(rng, image.shape, 0.02)
    return to_uint8(image + noise), (alpha >= 0.5).to(torch.uint8)


def render(y: np.ndarray, place: np.ndarray, size: int, rng: np.random.RandomState):
    """Images (N, 3, H, W) uint8 and masks (N, H, W) uint8 for classes ``y`` on ``place``."""
    pick = rng.random_sample(len(y))
    names = [FAMILIES[c][int(u * len(FAMILIES[c]))] for c, u in zip(y, pick)]
    return paint(names, size, rng, lambda r: backgrounds(place, size, r))


@register_dataset("waterbirds-synth")
class WaterbirdsSynth(Dataset):
    """Shape family vs. land/water background: 95% aligned in training, 50% in val/test."""

    track = "bias"
    version = "2"
    attrs = ("bias", "aligned", "group", "mask", "is_ood")
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
        "n_ood": HParam(
            1000, help="images of the OoD split (unseen shapes, label -1)", valid=AT_LEAST_ONE
        ),
        "n_shift": HParam(
            1000,
            help="images of the covariate-shift split (unseen backgrounds, labelled)",
            valid=AT_LEAST_ONE,
        ),
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
    tiny = {"sizes": [24, 8, 8], "size": 24, "n_ood": 8, "n_shift": 8}

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
        if options["n_ood"] < 1 or options["n_shift"] < 1:
            raise BenchError("waterbirds-synth: n_ood and n_shift must be positive")
        size, frac1 = int(options["size"]), float(options["waterbird_fraction"])
        rng = np.random.RandomState(options["seed"])
        splits = {}
        for name, n, p in zip(
            ("train", "val", "test"),
            sizes,
            (options["p_aligned"], options["eval_p_aligned"], options["eval_p_aligned"]),
        ):
            q = quotas(n, frac1, float(p))
            y = np.concatenate([np.full(c, g[0]) for g, c in q.items()]).astype(np.int64)
            place = np.concatenate([np.full(c, g[1]) for g, c in q.items()]).astype(np.int64)
            order = rng.permutation(len(y))
            y, place = y[order], place[order]
            images, masks = render(y, place, size, rng)
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
        # the two evaluation-only splits draw from their own generators, so that train, val
        # and test are the images of version 1 whatever n_ood / n_shift are
        ood_rng = np.random.RandomState([options["seed"], OOD_STREAM])
        n_ood = int(options["n_ood"])
        place = ood_rng.permutation(np.arange(n_ood) % 2)  # half land, half water
        names = [OOD_SHAPES[k] for k in ood_rng.randint(len(OOD_SHAPES), size=n_ood)]
        images, _ = paint(names, size, ood_rng, lambda r: backgrounds(place, size, r))
        splits["ood"] = Split(
            images,
            torch.full((n_ood,), -1, dtype=torch.int64),
            {"bias": torch.from_numpy(place.astype(np.int64))},
            pair_with="test",
        )
        shift_rng = np.random.RandomState([options["seed"], SHIFT_STREAM])
        q = quotas(int(options["n_shift"]), frac1, float(options["eval_p_aligned"]))
        y = np.concatenate([np.full(c, g[0]) for g, c in q.items()]).astype(np.int64)
        family = np.concatenate([np.full(c, g[1]) for g, c in q.items()]).astype(np.int64)
        order = shift_rng.permutation(len(y))
        y, family = y[order], family[order]
        pick = shift_rng.random_sample(len(y))
        names = [FAMILIES[c][int(u * len(FAMILIES[c]))] for c, u in zip(y, pick)]
        bg, kind = shift_backgrounds(family, size, shift_rng)
        images, _ = paint(names, size, shift_rng, lambda r: bg)
        splits["shift"] = Split(
            images,
            torch.from_numpy(y),
            {
                "bias": torch.from_numpy(family),
                "aligned": torch.from_numpy(family == y),
                "group": torch.from_numpy(2 * y + family),
                "background": torch.from_numpy(kind),
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
            eval_splits=("test", "ood", "shift"),
        )
