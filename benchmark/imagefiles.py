"""Images on disk as a lazy ``Split.inputs``, the decode geometry, and the pre-decoded cache.

``ImageFiles`` lists images by path relative to a root (ImageNet-LT, Places-LT, iNaturalist,
CUB, Waterbirds, ImageNet-S): nothing is decoded when a bundle is built, and the fingerprint
hashes relative paths and file sizes, not contents, so building a bundle of ImageNet-LT takes
seconds. ``benchmark.streaming`` trains and predicts from it; ``take`` decodes a few images
in the evaluation geometry (for metrics that need pixels).

Geometry (``Geometry``), as torchvision applies it to PIL images (bilinear, antialiased):

- evaluation: ``Resize(resize)`` of the short side (or to ``resize``² when ``square``, the
  group_DRO transform) then ``CenterCrop(size)``;
- training recipe ``imagenet``: ``RandomResizedCrop(size)`` (scale 0.08–1, ratio 3/4–4/3) +
  horizontal flip + ``ColorJitter(0.4, 0.4, 0.4, 0)`` (the TDE / classifier-balancing ImageNet-LT
  recipe); ``crop-flip``: the same without colour jitter; ``none``: the evaluation geometry.

Random parameters are drawn per image from ``(seed, epoch, position)``, so every decode path
and every number of worker processes gives the same crops, flips and jitter.

The frame cache (``FrameCache``) stores every image once, decoded and resized like the
evaluation transform (short side = ``resize``), as uint8 HWC rows of one flat memory-mapped
file. Evaluation from it is bit-identical to decoding the JPEG; training crops are resampled
from the resized frame (the same region of the image).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.errors import BenchError

TRAIN_RECIPES = ("imagenet", "crop-flip", "none")
JITTER = 0.4  # brightness, contrast and saturation factors are drawn from [1 - 0.4, 1 + 0.4]
RRC_SCALE = (0.08, 1.0)
RRC_RATIO = (3 / 4, 4 / 3)


@dataclass(frozen=True)
class Geometry:
    """How an image becomes a ``size``×``size`` model input (see the module docstring)."""

    size: int = 224
    resize: int = 256
    square: bool = False
    train: str = "imagenet"

    def __post_init__(self) -> None:
        if self.train not in TRAIN_RECIPES:
            raise BenchError(f"train_transform must be one of {', '.join(TRAIN_RECIPES)}")
        if not 1 <= self.size <= self.resize:
            raise BenchError(f"need 1 <= size ({self.size}) <= resize ({self.resize})")

    def resized(self, w: int, h: int) -> tuple[int, int]:
        """(width, height) after the evaluation resize (torchvision's ``Resize`` rule)."""
        if self.square:
            return self.resize, self.resize
        if w <= h:
            return self.resize, int(self.resize * h / w)
        return int(self.resize * w / h), self.resize

    def crop_origin(self, w: int, h: int) -> tuple[int, int]:
        """(left, top) of torchvision's ``CenterCrop(size)`` in a ``w``×``h`` image."""
        return round((w - self.size) / 2.0), round((h - self.size) / 2.0)


# -- random training parameters ---------------------------------------------------------------
def rrc_box(w: int, h: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """(left, top, width, height) of ``RandomResizedCrop``: 10 tries of a random area fraction
    and log-uniform aspect ratio, else the largest central crop within the ratio range."""
    area = w * h
    log_ratio = (math.log(RRC_RATIO[0]), math.log(RRC_RATIO[1]))
    for _ in range(10):
        target = area * rng.uniform(*RRC_SCALE)
        aspect = math.exp(rng.uniform(*log_ratio))
        cw = round(math.sqrt(target * aspect))
        ch = round(math.sqrt(target / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            return int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1)), cw, ch
    ratio = w / h
    if ratio < RRC_RATIO[0]:
        cw, ch = w, round(w / RRC_RATIO[0])
    elif ratio > RRC_RATIO[1]:
        cw, ch = round(h * RRC_RATIO[1]), h
    else:
        cw, ch = w, h
    return (w - cw) // 2, (h - ch) // 2, cw, ch


@dataclass
class Augment:
    """One image's random training parameters (``box`` in original pixel coordinates)."""

    box: tuple[float, float, float, float] | None  # None: the evaluation geometry
    flip: bool
    jitter: np.ndarray  # (3,) brightness, contrast, saturation factors
    order: np.ndarray  # (3,) order in which the three are applied

    @staticmethod
    def identity() -> Augment:
        return Augment(None, False, np.ones(3, np.float32), np.arange(3))


def draw_augment(
    w: int, h: int, geometry: Geometry, seed: int, epoch: int, position: int
) -> Augment:
    """The parameters of image ``position`` in ``epoch`` (independent of worker and path)."""
    if geometry.train == "none":
        return Augment.identity()
    rng = np.random.default_rng([seed, epoch, position])
    box = rrc_box(w, h, rng)
    flip = bool(rng.random() < 0.5)
    if geometry.train == "imagenet":
        jitter = rng.uniform(1 - JITTER, 1 + JITTER, 3).astype(np.float32)
        order = rng.permutation(3)
    else:
        jitter, order = np.ones(3, np.float32), np.arange(3)
    return Augment(box, flip, jitter, order)


# -- decoding with PIL ------------------------------------------------------------------------
def open_rgb(path: Path) -> Any:
    """A PIL RGB image (like torchvision's ``pil_loader``); a broken file names itself."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        why = type(exc).__name__
        raise BenchError(f"cannot decode image {path}: damaged or not an image ({why})") from exc


def open_mask(path: Path, kind: str) -> Any:
    """A PIL "L" mask: CUB's soft masks as stored; ImageNet-S's RGB id maps (id = R + 256·G,
    0 = background, 1000 = ignore) as 255 on every labelled object pixel."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            if kind != "ids":
                return img.convert("L")
            rgb = np.asarray(img.convert("RGB"), dtype=np.int64)
    except OSError as exc:
        raise BenchError(f"cannot decode mask {path}: {exc}") from exc
    ids = rgb[..., 0] + 256 * rgb[..., 1]
    return Image.fromarray(np.where((ids != 0) & (ids != 1000), 255, 0).astype(np.uint8))


def eval_resize(img: Any, geometry: Geometry) -> Any:
    """The evaluation resize (bilinear, antialiased as PIL does)."""
    from PIL import Image

    return img.resize(geometry.resized(*img.size), Image.Resampling.BILINEAR)


def center_crop(frame: np.ndarray, geometry: Geometry) -> np.ndarray:
    """``CenterCrop(size)`` of an (H, W, ...) array."""
    h, w = frame.shape[:2]
    left, top = geometry.crop_origin(w, h)
    return frame[top : top + geometry.size, left : left + geometry.size]


def resized_crop(img: Any, box: Sequence[float], geometry: Geometry, flip: bool) -> Any:
    """Region ``box`` (left, top, width, height) of a PIL image resized to ``size``², flipped."""
    from PIL import Image

    left, top, w, h = box
    out = img.resize(
        (geometry.size, geometry.size),
        Image.Resampling.BILINEAR,
        box=(left, top, left + w, top + h),
    )
    return out.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if flip else out


def jitter_pil(img: Any, aug: Augment) -> Any:
    """torchvision's ``ColorJitter`` on a PIL image: brightness, contrast and saturation
    (``ImageEnhance``) with ``aug``'s factors, in ``aug``'s order."""
    from PIL import ImageEnhance

    ops = (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color)
    for k in aug.order:
        if aug.jitter[k] != 1:
            img = ops[k](img).enhance(float(aug.jitter[k]))
    return img


def augmented(img: Any, aug: Augment, geometry: Geometry) -> np.ndarray:
    """uint8 (size, size, 3) training input from a PIL image: random resized crop of
    ``aug.box``, flip, colour jitter; the evaluation geometry when ``aug.box`` is None."""
    if aug.box is None:
        return center_crop(np.asarray(eval_resize(img, geometry)), geometry)
    return np.asarray(jitter_pil(resized_crop(img, aug.box, geometry, aug.flip), aug))


def decode_eval(path: Path, geometry: Geometry) -> np.ndarray:
    """uint8 (size, size, 3): decode, resize, centre-crop."""
    return center_crop(np.asarray(eval_resize(open_rgb(path), geometry)), geometry)


# -- the lazy inputs --------------------------------------------------------------------------
class FileList:
    """The full list of one split's files (shared by every subset of it)."""

    def __init__(self, root: Path, paths: Sequence[str], sizes: np.ndarray, name: str) -> None:
        self.root = Path(root)
        self.paths = np.asarray(paths, dtype=object)
        self.sizes = np.asarray(sizes, dtype=np.int64)
        self.name = name
        if len(self.paths) != len(self.sizes):
            raise ValueError("paths and sizes differ in length")

    @functools.cached_property
    def digest(self) -> str:
        """sha256 (16 hex) of the relative paths and sizes."""
        h = hashlib.sha256()
        for path, size in zip(self.paths, self.sizes):
            h.update(f"{path}:{size}\n".encode())
        return h.hexdigest()[:16]


class ImageFiles:
    """Lazy ``Split.inputs``: RGB images on disk, seen by the model as (N, 3, size, size).

    Indexing with a tensor, array, list or slice gives the lazy subset; ``take`` decodes.
    """

    kind = "rgb"

    def __init__(self, files: FileList, geometry: Geometry, rows: np.ndarray | None = None):
        self.files = files
        self.geometry = geometry
        self.rows = np.arange(len(files.paths)) if rows is None else np.asarray(rows, np.int64)

    @classmethod
    def from_paths(
        cls, root: Path, paths: Sequence[str], sizes: np.ndarray, geometry: Geometry, name: str
    ) -> ImageFiles:
        return cls(FileList(root, paths, sizes, name), geometry)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), 3, self.geometry.size, self.geometry.size)

    def __getitem__(self, index: Any) -> ImageFiles:
        if isinstance(index, torch.Tensor):
            index = index.cpu().numpy()
        if isinstance(index, int | np.integer):
            index = [int(index)]
        return type(self)(self.files, self.geometry, self.rows[index])

    def path(self, position: int) -> Path:
        return self.files.root / self.files.paths[self.rows[position]]

    def fingerprint_items(self) -> Iterator[str]:
        """What the fingerprint hashes: the geometry, then each relative path and size."""
        yield f"{self.kind}:{self.geometry}"
        paths, sizes = self.files.paths, self.files.sizes
        for r in self.rows:
            yield f"{paths[r]}:{sizes[r]}"

    def decode(self, position: int) -> np.ndarray:
        """Image ``position`` in the evaluation geometry, uint8 (size, size, 3)."""
        return decode_eval(self.path(position), self.geometry)

    def take(self, index: Any = None) -> torch.Tensor:
        """Decode images (all when ``index`` is None) in the evaluation geometry: uint8
        (n, 3, size, size), in this process (use ``benchmark.streaming`` for many)."""
        positions = range(len(self)) if index is None else np.arange(len(self))[index]
        arrays = [self.decode(int(p)) for p in np.atleast_1d(positions)]
        if not arrays:
            return torch.empty(0, *self.shape[1:], dtype=torch.uint8)
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


class MaskFiles(ImageFiles):
    """Lazy ``mask`` attribute: uint8 (N, size, size) object masks in the evaluation geometry
    (``mask_kind`` "soft": CUB's 0..255 masks; "ids": ImageNet-S id maps -> 0/255)."""

    kind = "mask"

    def __init__(
        self,
        files: FileList,
        geometry: Geometry,
        rows: np.ndarray | None = None,
        mask_kind: str = "soft",
    ) -> None:
        super().__init__(files, geometry, rows)
        self.mask_kind = mask_kind

    def __getitem__(self, index: Any) -> MaskFiles:
        sub = super().__getitem__(index)
        return MaskFiles(sub.files, sub.geometry, sub.rows, self.mask_kind)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), self.geometry.size, self.geometry.size)

    def fingerprint_items(self) -> Iterator[str]:
        yield f"{self.mask_kind}"
        yield from super().fingerprint_items()

    def decode(self, position: int) -> np.ndarray:
        mask = eval_resize(open_mask(self.path(position), self.mask_kind), self.geometry)
        return center_crop(np.asarray(mask), self.geometry)

    def take(self, index: Any = None) -> torch.Tensor:
        positions = range(len(self)) if index is None else np.arange(len(self))[index]
        arrays = [self.decode(int(p)) for p in np.atleast_1d(positions)]
        if not arrays:
            return torch.empty(0, *self.shape[1:], dtype=torch.uint8)
        return torch.from_numpy(np.stack(arrays))


def take(x: Any, index: Any = None) -> torch.Tensor:
    """Rows ``index`` of in-memory inputs or attributes, or of lazy ones decoded (for metrics
    that read ``inputs`` or the ``mask`` attribute of a split that may live on disk)."""
    if isinstance(x, torch.Tensor):
        return x if index is None else x[index]
    return x.take(index)


# -- the pre-decoded frame cache --------------------------------------------------------------
def cache_root() -> Path:
    from benchmark.data import cache_dir

    return cache_dir() / "frames"


def _decode_frames(
    task: tuple[Path, list[str], Geometry],
) -> list[tuple[bytes, int, int, int, int]]:
    """Worker: decode and eval-resize a chunk of files -> (pixels, h, w, h0, w0) each."""
    from PIL import Image

    Image.init()
    root, paths, geometry = task
    out = []
    for rel in paths:
        img = open_rgb(root / rel)
        w0, h0 = img.size
        frame = np.asarray(eval_resize(img, geometry), dtype=np.uint8)
        out.append((frame.tobytes(), frame.shape[0], frame.shape[1], h0, w0))
    return out


class FrameCache:
    """A split's images decoded once at the evaluation resize: ``pixels.u8`` (uint8 HWC rows,
    back to back), ``index.npy`` (offset, h, w, original h, original w) and ``meta.json``."""

    VERSION = 1

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.index = np.load(folder / "index.npy")
        self._pixels: np.ndarray | None = None

    @staticmethod
    def folder_for(files: ImageFiles) -> Path:
        g = files.geometry
        key = hashlib.sha256(
            f"{FrameCache.VERSION}:{files.files.digest}:{g.resize}:{g.square}".encode()
        ).hexdigest()[:16]
        name = "".join(c if c.isalnum() or c in "-_" else "-" for c in files.files.name)
        return cache_root() / f"{name or 'images'}-{key}"

    @classmethod
    def find(cls, files: ImageFiles) -> FrameCache | None:
        folder = cls.folder_for(files)
        return cls(folder) if (folder / "meta.json").is_file() else None

    @property
    def pixels(self) -> np.ndarray:
        if self._pixels is None:  # opened lazily, once per process (DataLoader workers too)
            self._pixels = np.memmap(self.folder / "pixels.u8", dtype=np.uint8, mode="r")
        return self._pixels

    def frame(self, row: int) -> np.ndarray:
        offset, h, w = (int(v) for v in self.index[row, :3])
        return self.pixels[offset : offset + h * w * 3].reshape(h, w, 3)

    def original_size(self, row: int) -> tuple[int, int]:
        """(width, height) of the image before the resize."""
        return int(self.index[row, 4]), int(self.index[row, 3])

    def nbytes(self) -> int:
        return (self.folder / "pixels.u8").stat().st_size

    def eval_image(self, row: int, geometry: Geometry) -> np.ndarray:
        return center_crop(self.frame(row), geometry)

    def train_region(self, row: int, aug: Augment) -> np.ndarray:
        """The part of image ``row``'s frame under ``aug.box`` (given in original pixels),
        widened to whole frame pixels: for resizing on the device."""
        frame = self.frame(row)
        w0, h0 = self.original_size(row)
        fh, fw = frame.shape[:2]
        left, top, w, h = aug.box  # type: ignore[misc]
        x0, y0 = math.floor(left * fw / w0), math.floor(top * fh / h0)
        x1 = max(x0 + 1, min(fw, math.ceil((left + w) * fw / w0)))
        y1 = max(y0 + 1, min(fh, math.ceil((top + h) * fh / h0)))
        return frame[y0:y1, x0:x1]

    def train_image(self, row: int, geometry: Geometry, aug: Augment) -> np.ndarray:
        """The training crop of image ``row`` resampled from its frame (the same region as
        ``decode_train`` takes from the original)."""
        from PIL import Image

        frame = self.frame(row)
        if aug.box is None:
            return center_crop(frame, geometry)
        w0, h0 = self.original_size(row)
        fh, fw = frame.shape[:2]
        left, top, w, h = aug.box
        x0, y0 = left * fw / w0, top * fh / h0
        box = (x0, y0, min(fw - x0, w * fw / w0), min(fh - y0, h * fh / h0))
        scaled = Augment(box, aug.flip, aug.jitter, aug.order)
        return augmented(Image.fromarray(np.asarray(frame)), scaled, geometry)

    @classmethod
    def build(
        cls, files: ImageFiles, *, workers: int | None = None, progress: bool = True
    ) -> tuple[FrameCache, float]:
        """Decode every file of ``files``' full list once (in ``workers`` processes) and write
        the cache atomically (a temporary folder renamed at the end). Returns (cache, seconds);
        an existing cache is returned as is (0 seconds)."""
        from benchmark.progress import progress_bar

        found = cls.find(files)
        if found is not None:
            return found, 0.0
        folder = cls.folder_for(files)
        tmp = folder.with_name(f".{folder.name}.partial-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        fl, g = files.files, files.geometry
        chunk = 32
        tasks = [
            (fl.root, list(fl.paths[i : i + chunk]), g) for i in range(0, len(fl.paths), chunk)
        ]
        workers = default_workers() if workers is None else workers
        start = time.perf_counter()
        index = np.zeros((len(fl.paths), 5), dtype=np.int64)
        try:
            with (tmp / "pixels.u8").open("wb") as out:
                offset = 0
                decoded = (f for part in _map(_decode_frames, tasks, workers) for f in part)
                bar = progress_bar(
                    decoded,
                    enabled=progress,
                    total=len(fl.paths),
                    desc=f"cache {fl.name or 'images'}",
                    unit="img",
                )
                for row, (pixels, h, w, h0, w0) in enumerate(bar):
                    out.write(pixels)
                    index[row] = (offset, h, w, h0, w0)
                    offset += len(pixels)
                out.flush()
                os.fsync(out.fileno())
            np.save(tmp / "index.npy", index)
            meta = {"version": cls.VERSION, "images": len(index), "geometry": str(g)}
            (tmp / "meta.json").write_text(json.dumps(meta) + "\n")
            try:
                tmp.rename(folder)
            except OSError:  # built meanwhile by another process: keep theirs
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return cls(folder), time.perf_counter() - start


def default_workers() -> int:
    """``$BENCH_WORKERS``, else one decoding process per CPU core (at most 16)."""
    env = os.environ.get("BENCH_WORKERS")
    if env:
        try:
            return max(0, int(env))
        except ValueError:
            raise BenchError(f"BENCH_WORKERS must be an integer, got {env!r}") from None
    return min(16, os.cpu_count() or 1)


def _map(fn: Any, tasks: list[Any], workers: int) -> Iterator[Any]:
    """``map`` in ``workers`` forked processes (in order), or in this process for 0 or 1."""
    if workers <= 1 or len(tasks) <= 1:
        yield from map(fn, tasks)
        return
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(workers) as pool:
        yield from pool.imap(fn, tasks)
