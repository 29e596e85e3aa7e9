"""Procedural shapes and textures for the built-in datasets (PIL + torch; seeded; no download).

Shapes are polygons in unit coordinates, rasterised with PIL at 4× and box-filtered down to an
anti-aliased alpha matte in [0, 1]; the object mask is ``alpha >= 0.5``. Textures are grey
fields in [0, 1] (1/f noise, waves, stripes, checkerboards, dots) that ``tint`` maps between
two colours. Every function takes a ``numpy.random.RandomState`` and draws from it in a fixed
order (per-pixel noise from a torch generator seeded by one draw), so the same seed gives the
same images. Pixel arrays are float32 torch tensors (N, [C,] H, W).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

SUPERSAMPLE = 4


# -- shapes -------------------------------------------------------------------------------
def _ring(k: int, radius: np.ndarray | float = 1.0, phase: float = 0.0) -> np.ndarray:
    t = phase + 2 * np.pi * np.arange(k) / k
    r = np.broadcast_to(radius, t.shape)
    return np.stack([r * np.sin(t), -r * np.cos(t)], 1)


def shape_outline(name: str, rng: np.random.RandomState) -> np.ndarray:
    """Vertices (K, 2) of shape ``name`` in [-1, 1]², pointing up, before rotation.

    ``ellipse`` and ``blob`` draw their aspect ratio / contour from ``rng``; the others are
    fixed. Areas are roughly equal so that size is not a class cue.
    """
    if name == "circle":
        return _ring(64, 0.85)
    if name == "ellipse":
        pts = _ring(64)
        return pts * np.array([rng.uniform(0.45, 0.65), 1.0])
    if name == "square":
        return _ring(4, 1.05, math.pi / 4)
    if name == "diamond":
        return _ring(4, 1.0) * np.array([0.7, 1.0])
    if name == "triangle":
        return _ring(3, 1.0) + np.array([0.0, 0.2])
    if name == "star":
        return _ring(10, np.tile([1.0, 0.45], 5))
    if name == "hexagon":
        return _ring(6, 0.95)
    if name == "cross":
        a, b = 0.32, 0.95
        return np.array(
            [[-a, -b], [a, -b], [a, -a], [b, -a], [b, a], [a, a], [a, b], [-a, b], [-a, a],
             [-b, a], [-b, -a], [-a, -a]]
        )  # fmt: skip
    if name == "heart":
        t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        x = 16 * np.sin(t) ** 3
        y = 13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)
        return np.stack([x / 17, -(y + 2.5) / 17], 1)
    if name == "blob":
        t = 2 * np.pi * np.arange(64) / 64
        r = np.ones_like(t)
        for k in (2, 3, 4):
            r += rng.uniform(0.05, 0.16) * np.cos(k * t + rng.uniform(0, 2 * np.pi))
        return _ring(64, 0.85 * r / r.max() * 1.05)
    raise ValueError(f"unknown shape {name!r}")


SHAPES = ("circle", "ellipse", "square", "diamond", "triangle", "star", "hexagon", "cross",
          "heart", "blob")  # fmt: skip


def draw_shapes(
    names: Sequence[str],
    size: int,
    rng: np.random.RandomState,
    *,
    scale: tuple[float, float] = (0.25, 0.4),
    rotation: float = 180.0,
) -> torch.Tensor:
    """Alpha mattes (N, size, size) float32 of ``names[k]``, each with a random radius
    (fraction of the image side), rotation (± degrees) and position fully inside the image."""
    from PIL import Image, ImageDraw

    n, big = len(names), size * SUPERSAMPLE
    radius = rng.uniform(*scale, n) * size
    angle = np.deg2rad(rng.uniform(-rotation, rotation, n))
    margin = radius * 1.05
    cx = rng.uniform(margin, size - margin)
    cy = rng.uniform(margin, size - margin)
    out = np.empty((n, size, size), dtype=np.uint8)
    for i, name in enumerate(names):
        pts = shape_outline(name, rng)
        c, s = math.cos(angle[i]), math.sin(angle[i])
        pts = pts @ np.array([[c, s], [-s, c]]) * radius[i] + (cx[i], cy[i])
        canvas = Image.new("L", (big, big), 0)
        ImageDraw.Draw(canvas).polygon([tuple(p) for p in pts * SUPERSAMPLE], fill=255)
        out[i] = np.asarray(canvas.resize((size, size), Image.Resampling.BOX))
    return torch.from_numpy(out).float() / 255.0


# -- textures -----------------------------------------------------------------------------
def generator(rng: np.random.RandomState) -> torch.Generator:
    """A torch generator seeded by one draw from ``rng`` (fast per-pixel noise)."""
    return torch.Generator().manual_seed(int(rng.randint(0, 2**31 - 1)))


def normal(rng: np.random.RandomState, shape: tuple[int, ...], std: float = 1.0) -> torch.Tensor:
    """float32 N(0, std²) noise of ``shape``."""
    return torch.randn(shape, generator=generator(rng)).mul_(std)


def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    yy, xx = torch.meshgrid(
        torch.arange(size, dtype=torch.float32),
        torch.arange(size, dtype=torch.float32),
        indexing="ij",
    )
    return yy, xx


def _param(values: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(values, dtype=np.float32))[:, None, None]


def fractal_noise(rng: np.random.RandomState, n: int, size: int, beta: float = 2.0) -> torch.Tensor:
    """1/f^β noise (power spectrum ∝ f^-β), per image rescaled to [0, 1]: (n, size, size)."""
    white = normal(rng, (n, size, size))
    f = torch.sqrt(torch.fft.fftfreq(size)[:, None] ** 2 + torch.fft.rfftfreq(size)[None, :] ** 2)
    f[0, 0] = 1.0
    field = torch.fft.irfft2(torch.fft.rfft2(white) / f ** (beta / 2), s=(size, size))
    return _rescale(field)


def waves(
    rng: np.random.RandomState,
    n: int,
    size: int,
    *,
    spread: float = 25.0,
    period: tuple[float, float] = (6.0, 14.0),
) -> torch.Tensor:
    """Sum of three sinusoids with near-horizontal crests (±``spread`` degrees) plus a little
    1/f noise: water-like ripples in [0, 1]. ``period`` in pixels at 64 px."""
    yy, xx = _grid(size)
    field = torch.zeros(n, size, size)
    for _ in range(3):
        theta = np.deg2rad(90 + rng.uniform(-spread, spread, n))
        k = 2 * np.pi / (rng.uniform(*period, n) * size / 64)
        phase = _param(rng.uniform(0, 2 * np.pi, n))
        field += torch.sin(_param(k * np.cos(theta)) * xx + _param(k * np.sin(theta)) * yy + phase)
    field = _rescale(field) + 0.35 * fractal_noise(rng, n, size, 1.5)
    return _rescale(field)


def stripes(rng: np.random.RandomState, n: int, size: int) -> torch.Tensor:
    """Soft stripes of random orientation and period (3–10 px at 64 px)."""
    yy, xx = _grid(size)
    theta = rng.uniform(0, np.pi, n)
    k = 2 * np.pi / (rng.uniform(3, 10, n) * size / 64)
    phase = _param(rng.uniform(0, 2 * np.pi, n))
    wave = torch.sin(_param(k * np.cos(theta)) * xx + _param(k * np.sin(theta)) * yy + phase)
    return 0.5 + 0.5 * wave


def checker(rng: np.random.RandomState, n: int, size: int) -> torch.Tensor:
    """Rotated checkerboards with random cell size (4–12 px at 64 px)."""
    yy, xx = _grid(size)
    theta = rng.uniform(0, np.pi / 2, n)
    cell = rng.uniform(4, 12, n) * size / 64
    u = _param(np.cos(theta) / cell) * xx + _param(np.sin(theta) / cell) * yy
    v = _param(-np.sin(theta) / cell) * xx + _param(np.cos(theta) / cell) * yy
    return (torch.floor(u) + torch.floor(v)).remainder(2)


def dots(rng: np.random.RandomState, n: int, size: int) -> torch.Tensor:
    """A shifted lattice of soft dots (polka dots)."""
    yy, xx = _grid(size)
    period = _param(rng.uniform(6, 14, n) * size / 64)
    ox, oy = (_param(v) * period for v in rng.uniform(0, 1, (2, n)))
    du = (xx + ox).remainder(period) - period / 2
    dv = (yy + oy).remainder(period) - period / 2
    r = torch.sqrt(du**2 + dv**2) / period
    return ((0.3 - r) / 0.08).clamp(0, 1)


TEXTURES = {
    "noise": fractal_noise,
    "waves": waves,
    "stripes": stripes,
    "checker": checker,
    "dots": dots,
}


def texture(kinds: np.ndarray, size: int, rng: np.random.RandomState) -> torch.Tensor:
    """Grey textures (N, size, size) in [0, 1]; ``kinds[k]`` indexes ``TEXTURES``."""
    out = torch.empty(len(kinds), size, size)
    for j, make in enumerate(TEXTURES.values()):
        idx = np.flatnonzero(kinds == j)
        if len(idx):
            out[torch.from_numpy(idx)] = make(rng, len(idx), size)
    return out


def tint(grey: torch.Tensor, low: np.ndarray, high: np.ndarray) -> torch.Tensor:
    """Map grey (N, H, W) in [0, 1] linearly from colour ``low`` to ``high`` (N, 3 arrays):
    returns (N, 3, H, W) float32."""
    lo = torch.from_numpy(np.asarray(low, dtype=np.float32))[:, :, None, None]
    hi = torch.from_numpy(np.asarray(high, dtype=np.float32))[:, :, None, None]
    return torch.addcmul(lo, hi - lo, grey[:, None])


def composite(fg: torch.Tensor, bg: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """``fg · α + bg · (1 − α)`` for (N, 3, H, W) images and (N, H, W) alpha."""
    return torch.lerp(bg, fg, alpha[:, None])


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] -> uint8 (rounded, clipped)."""
    return (x * 255).round_().clamp_(0, 255).to(torch.uint8)


def _rescale(field: torch.Tensor) -> torch.Tensor:
    lo = field.amin(dim=(1, 2), keepdim=True)
    hi = field.amax(dim=(1, 2), keepdim=True)
    return (field - lo) / (hi - lo).clamp_min(1e-12)
