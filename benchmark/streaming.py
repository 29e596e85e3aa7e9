"""Training and inference on images that live on disk (``ImageFiles`` inputs).

``Trainer.fit`` and ``Trainer.predict`` hand a split here when its inputs are not a tensor.
Three decode paths feed the same loop; ``$BENCH_DECODE`` picks one (default ``auto``):

- ``cpu``: DataLoader worker processes decode with PIL and crop/resize/flip (uint8 batches);
- ``gpu``: workers only read the file bytes; ``torchvision.io.decode_jpeg(..., device="cuda")``
  decodes a whole batch on the GPU, where crops, resizes and flips happen (non-JPEG files are
  decoded on the CPU and moved);
- ``cache``: workers read frames from the pre-decoded memory-mapped cache
  (``benchmark.imagefiles.FrameCache``, built by ``bench cache DATASET`` or on first use).

``auto`` takes the cache when it has been built, else ``cpu`` (also on CUDA: see
``decode_path``). On CUDA the workers only decode (or read the cache) and cut out the training
crop; resizing, flipping and colour jitter run batched on the device (``device_crops``,
``color_jitter`` with torchvision's tensor formulas). Without CUDA the workers do it all with
PIL, as torchvision's transforms do on PIL images. ``$BENCH_WORKERS`` sets the number of worker
processes (default: one per core, at most 16). Random crops, flips and jitter depend only on
(seed, epoch, position), so the paths and any number of workers draw the same ones.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from benchmark import distributed
from benchmark.device import autocast
from benchmark.errors import BenchError
from benchmark.imagefiles import (
    Augment,
    FrameCache,
    Geometry,
    ImageFiles,
    augmented,
    decode_eval,
    default_workers,
    draw_augment,
    open_rgb,
)
from benchmark.outputs import Outputs
from benchmark.progress import progress_bar

if TYPE_CHECKING:
    from benchmark.dataset import Split
    from benchmark.method import Method
    from benchmark.training import Trainer

DECODE = ("auto", "cpu", "gpu", "cache")
EVAL_BATCH = 256


def decode_path(inputs: ImageFiles, device: torch.device, *, progress: bool = True) -> str:
    """The decode path for ``inputs`` on ``device`` from ``$BENCH_DECODE`` (see module doc)."""
    requested = os.environ.get("BENCH_DECODE", "auto").strip().lower() or "auto"
    if requested not in DECODE:
        raise BenchError(f"BENCH_DECODE must be one of {', '.join(DECODE)}, got {requested!r}")
    if requested == "gpu" and device.type != "cuda":
        raise BenchError("BENCH_DECODE=gpu needs a CUDA device; use cpu or cache")
    if requested == "cache":
        FrameCache.build(inputs, progress=progress)
        return "cache"
    if requested == "auto":
        if FrameCache.find(inputs) is not None:
            return "cache"
        # not "gpu" by default: on one H100 with 16 cores the cpu path delivered more images/s
        # (2,519 vs about 2,300 steady; per-image device crops bound the gpu path) and a gpu-path
        # training run diverged where the cache path did not (README, "Large image datasets")
        return "cpu"
    return requested


# -- what a worker does for one image ---------------------------------------------------------
class _Items(torch.utils.data.Dataset):
    """Image ``position`` of a split in ``epoch`` (−1: evaluation geometry).

    ``ops="worker"``: the worker returns the final uint8 image (crop, resize, flip, jitter with
    PIL). ``ops="device"``: for training crops it returns only the cropped region, and the
    device resizes, flips and jitters (the default on CUDA: far less CPU work per image).
    """

    def __init__(self, inputs: ImageFiles, mode: str, seed: int, ops: str) -> None:
        self.inputs, self.mode, self.seed, self.ops = inputs, mode, seed, ops
        self.cache = FrameCache.find(inputs) if mode == "cache" else None
        if mode == "cache" and self.cache is None:
            raise BenchError("the frame cache of this split has not been built (bench cache)")

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        position, epoch = key
        g = self.inputs.geometry
        row = int(self.inputs.rows[position])
        item: dict[str, Any]
        if self.mode == "gpu":
            from PIL import Image

            path = self.inputs.path(position)
            data = path.read_bytes()
            try:
                with Image.open(io.BytesIO(data)) as img:  # header only: the size
                    w, h = img.size
            except OSError as exc:  # UnidentifiedImageError included
                why = type(exc).__name__
                msg = f"cannot decode image {path}: damaged or not an image ({why})"
                raise BenchError(msg) from exc
            if epoch >= 0:
                aug = draw_augment(w, h, g, self.seed, epoch, position)
            else:
                aug = Augment.identity()
            item = {"data": torch.frombuffer(bytearray(data), dtype=torch.uint8), "aug": aug}
        elif self.mode == "cache":
            assert self.cache is not None
            if epoch < 0:
                aug, image = Augment.identity(), self.cache.eval_image(row, g)
            else:
                aug = draw_augment(*self.cache.original_size(row), g, self.seed, epoch, position)
                if self.ops == "device" and aug.box is not None:
                    image = self.cache.train_region(row, aug)
                else:
                    image = self.cache.train_image(row, g, aug)
            item = {"image": torch.from_numpy(np.array(image))}
        else:
            path = self.inputs.path(position)
            if epoch < 0:
                aug, image = Augment.identity(), decode_eval(path, g)
            else:
                img = open_rgb(path)
                aug = draw_augment(*img.size, g, self.seed, epoch, position)
                if self.ops == "device" and aug.box is not None:
                    left, top, w, h = (int(v) for v in aug.box)
                    image = np.asarray(img)[top : top + h, left : left + w]
                else:
                    image = augmented(img, aug, g)
            item = {"image": torch.from_numpy(np.array(image))}
        item["crop"] = self.ops == "device" and self.mode != "gpu" and aug.box is not None
        item["flip"] = aug.flip
        item["position"] = position
        item["jitter"] = torch.from_numpy(aug.jitter)
        item["order"] = torch.from_numpy(np.asarray(aug.order, dtype=np.int64))
        return item


def _collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "position": torch.tensor([i["position"] for i in items], dtype=torch.int64),
        "jitter": torch.stack([i["jitter"] for i in items]),
        "order": torch.stack([i["order"] for i in items]),
        "flip": [i["flip"] for i in items],
    }
    if "data" in items[0]:  # encoded files (gpu path)
        out["data"] = [i["data"] for i in items]
        out["aug"] = [i["aug"] for i in items]
    elif items[0]["crop"]:  # regions of different sizes, back to back in one buffer
        out["crops"] = torch.cat([i["image"].reshape(-1) for i in items])
        out["shapes"] = [tuple(i["image"].shape[:2]) for i in items]
    else:  # (B, H, W, 3) memory seen as (B, 3, H, W): channels-last
        out["images"] = torch.stack([i["image"] for i in items]).permute(0, 3, 1, 2)
    return out


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)


class _Plan:
    """The batch sampler: lists of (position, epoch), replaced before each pass."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[int, int]]] = []

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


# -- device-side image operations -------------------------------------------------------------
def _is_jpeg(data: torch.Tensor) -> bool:
    return len(data) > 2 and int(data[0]) == 0xFF and int(data[1]) == 0xD8


def decode_batch(datas: Sequence[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """Encoded files -> uint8 (3, H, W) images on ``device``: JPEGs in one batched
    ``decode_jpeg`` call on the device (nvJPEG on CUDA), anything else (PNG, CMYK JPEG the
    device cannot decode) with ``decode_image`` on the CPU."""
    import warnings

    from torchvision.io import ImageReadMode, decode_image, decode_jpeg

    out: list[torch.Tensor | None] = [None] * len(datas)
    jpegs = [i for i, d in enumerate(datas) if _is_jpeg(d)]
    with warnings.catch_warnings():  # torchvision 0.29 points at TorchCodec; these still work
        warnings.simplefilter("ignore", DeprecationWarning)
        if jpegs:
            try:
                decoded = decode_jpeg(
                    [datas[i] for i in jpegs], mode=ImageReadMode.RGB, device=device
                )
                if device.type == "cuda":  # the decoder's work done before our streams read it
                    torch.cuda.synchronize(device)
                for i, img in zip(jpegs, decoded):
                    out[i] = img
            except RuntimeError:
                pass  # one bad or unsupported file: decode one by one below
        for i, img in enumerate(out):
            if img is None:
                try:
                    out[i] = decode_image(datas[i], mode=ImageReadMode.RGB).to(device)
                except RuntimeError as exc:
                    raise BenchError(f"cannot decode an image of this batch: {exc}") from exc
    return out  # type: ignore[return-value]


def _resized(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Bilinear resize with antialiasing (as PIL does when it shrinks) of (1, 3, H, W)."""
    return F.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False)


def device_crop(img: torch.Tensor, aug: Augment, geometry: Geometry) -> torch.Tensor:
    """One decoded uint8 (3, H, W) image -> float (3, size, size) in [0, 1] on its device:
    the training crop + resize + flip of ``aug``, or the evaluation resize + centre crop."""
    x = img[None].float()
    s = geometry.size
    if aug.box is None:
        w, h = geometry.resized(img.shape[2], img.shape[1])
        left, top = geometry.crop_origin(w, h)
        x = _resized(x, h, w)[..., top : top + s, left : left + s]
    else:
        left, top, w, h = (int(v) for v in aug.box)
        x = _resized(x[..., top : top + h, left : left + w], s, s)
        if aug.flip:
            x = x.flip(-1)
    return (x[0] / 255.0).clamp_(0, 1)


def device_crops(
    flat: torch.Tensor, shapes: Sequence[tuple[int, int]], flips: Sequence[bool], size: int
) -> torch.Tensor:
    """Cropped regions (uint8 HWC, back to back in ``flat``, on the device) -> float
    (B, 3, size, size) in [0, 1]: each resized and flipped."""
    parts = torch.split(flat, [h * w * 3 for h, w in shapes])
    out = []
    for part, (h, w), flip in zip(parts, shapes, flips):
        x = _resized(part.view(1, h, w, 3).permute(0, 3, 1, 2).float(), size, size)
        out.append(x.flip(-1) if flip else x)
    return (torch.cat(out) / 255.0).clamp_(0, 1)


def _gray(x: torch.Tensor) -> torch.Tensor:
    return (0.2989 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)


def color_jitter(x: torch.Tensor, factors: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """torchvision's ``ColorJitter`` (brightness, contrast, saturation; hue 0) on a float batch
    in [0, 1], per sample: factors (B, 3) applied in the per-sample ``order`` (B, 3)."""
    f = factors.to(x.device, x.dtype)
    order = order.to(x.device)
    for step in range(3):
        op = order[:, step]
        b = torch.where(op == 0, f[:, 0], 1.0).view(-1, 1, 1, 1)
        x = (x * b).clamp(0, 1)
        c = torch.where(op == 1, f[:, 1], 1.0).view(-1, 1, 1, 1)
        mean = _gray(x).mean(dim=(1, 2, 3), keepdim=True)
        x = (c * x + (1 - c) * mean).clamp(0, 1)
        s = torch.where(op == 2, f[:, 2], 1.0).view(-1, 1, 1, 1)
        x = (s * x + (1 - s) * _gray(x)).clamp(0, 1)
    return x


# -- the stream -------------------------------------------------------------------------------
class Stream:
    """Batches of one split's images on ``device``, through the decode path ``mode``."""

    def __init__(
        self,
        inputs: ImageFiles,
        mode: str,
        device: torch.device,
        *,
        seed: int = 0,
        workers: int | None = None,
        ops: str | None = None,
    ) -> None:
        """``ops``: who resizes, flips and jitters training crops: "worker" (PIL; the default
        without CUDA), "device" (the default on CUDA and for the gpu path) or "skip" (as
        "device", but the device work is skipped: only to time what the workers deliver)."""
        self.inputs, self.mode, self.device = inputs, mode, device
        if ops is None:
            ops = "device" if device.type == "cuda" or mode == "gpu" else "worker"
        if ops not in ("worker", "device", "skip"):
            raise ValueError(f"ops must be worker, device or skip, not {ops!r}")
        self.ops = ops
        workers = default_workers() if workers is None else workers
        self.plan = _Plan()
        extra: dict[str, Any] = {}
        if workers > 0:  # workers start per pass (an epoch) and stop when it ends
            extra = {"prefetch_factor": 4, "worker_init_fn": _worker_init}
        self.loader = torch.utils.data.DataLoader(
            _Items(inputs, mode, seed, "worker" if ops == "worker" else "device"),
            batch_sampler=self.plan,
            num_workers=workers,
            collate_fn=_collate,
            pin_memory=device.type == "cuda",
            **extra,
        )

    def batches(
        self, positions: Sequence[Sequence[int]] | torch.Tensor, epoch: int = -1
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(images on the device, positions) per batch of ``positions``; ``epoch`` ≥ 0 draws
        training augmentation, −1 gives the evaluation geometry. Images are uint8 (made by the
        workers) or float in [0, 1] (resized or jittered on the device)."""
        rows = positions.tolist() if isinstance(positions, torch.Tensor) else positions
        self.plan.batches = [[(int(p), epoch) for p in row] for row in rows]
        g = self.inputs.geometry
        jitter = epoch >= 0 and g.train == "imagenet" and self.ops == "device"
        for batch in _one_line_errors(self.loader):
            if self.ops == "skip":
                yield torch.empty(0), batch["position"]
                continue
            if "data" in batch:
                images = decode_batch(batch["data"], self.device)
                x = torch.stack([device_crop(i, a, g) for i, a in zip(images, batch["aug"])])
            elif "crops" in batch:
                flat = batch["crops"].to(self.device, non_blocking=True)
                x = device_crops(flat, batch["shapes"], batch["flip"], g.size)
            else:
                x = batch["images"].to(self.device, non_blocking=True)
            if jitter:
                x = x.float() / 255.0 if x.dtype == torch.uint8 else x
                x = color_jitter(x, batch["jitter"], batch["order"])
            yield x, batch["position"]

    def close(self) -> None:
        """Release the loader (its workers stop at the end of each pass anyway)."""
        self.loader = None  # type: ignore[assignment]


def _one_line_errors(loader: Any) -> Iterator[Any]:
    """The loader's batches; a BenchError raised in a worker process arrives with the worker's
    traceback in its message: keep its last line only (the CLI prints one line). A pass that
    ends early (an error, a consumer that stops) stops its workers at once."""
    iterator = iter(loader)
    try:
        while True:
            try:
                batch = next(iterator)
            except StopIteration:
                return
            except BenchError as exc:
                last = str(exc).strip().splitlines()[-1]
                raise BenchError(last.removeprefix("benchmark.errors.BenchError: ")) from None
            yield batch
    finally:
        shutdown = getattr(iterator, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()


def _chunks(n: int, size: int) -> list[list[int]]:
    return [list(range(s, min(n, s + size))) for s in range(0, n, size)]


# -- training and inference -------------------------------------------------------------------
def fit(trainer: Trainer, method: Method, split: Split) -> None:
    """``Trainer.fit`` for on-disk inputs: the same protocol (lr schedule per epoch, hooks,
    divergence check), batches streamed from the decode path."""
    from benchmark.training import (
        Batch,
        epoch_order,
        sample_weights,
        sampling_probabilities,
    )

    hp, info, model = method.hp, method.info, method.model
    assert model is not None, "method.setup() builds the model before fit"
    device = trainer.device
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    if hp.get("paired_split"):
        raise BenchError("paired_split works on in-memory splits, not on images on disk")
    optimizers = method.optimizers()
    base_lrs = [g["lr"] for opt in optimizers for g in opt.param_groups]
    inputs: ImageFiles = split.inputs
    mode = decode_path(inputs, device, progress=trainer.progress)
    y_all = split.labels.to(device)
    attrs = {
        k: v.to(device)
        for k, v in split.attrs.items()
        if k != "mask" and isinstance(v, torch.Tensor)
    }
    n = len(split)
    bs = min(hp.batch_size, n)
    steps = n // bs
    local = distributed.local_batch(bs)  # under torchrun each rank takes a slice of the batch
    offset = distributed.rank() * local
    gen = torch.Generator().manual_seed(trainer.seed)
    weights = sample_weights(method, split, device)
    probs = sampling_probabilities(method, split, torch.device("cpu"))
    stream = Stream(inputs, mode, device, seed=trainer.seed)
    step = 0
    bar = progress_bar(
        range(hp.epochs), desc=f"train {method.name}", unit="epoch", enabled=trainer.progress
    )
    try:
        for epoch in bar:
            start = time.perf_counter()
            factor = trainer.start_epoch(method, optimizers, base_lrs, epoch)
            perm = epoch_order(n, gen, torch.device("cpu"), probs)[: steps * bs].view(steps, bs)
            perm = perm[:, offset : offset + local]
            total = torch.zeros((), device=device)
            for x, positions in stream.batches(perm, epoch):
                idx = positions.to(device)
                batch = Batch(
                    trainer.normalise(x, info),
                    y_all[idx],
                    {k: v[idx] for k, v in attrs.items()},
                    idx,
                    epoch,
                    step,
                )
                if weights is not None:
                    batch.weight = weights[idx]
                total += trainer.train_step(method, optimizers, batch)
                step += 1
            mean_loss = trainer.end_epoch(
                method, epoch, total, steps, steps * bs, base_lrs[0] * factor, start, decode=mode
            )
            if hasattr(bar, "set_postfix"):
                speed = trainer.history[-1]["images_per_s"]
                bar.set_postfix(loss=f"{mean_loss:.3f}", img_s=f"{speed:.0f}")
        distributed.average_buffers(model)  # BN statistics and running averages of all ranks
    finally:
        stream.close()


@torch.no_grad()
def predict(trainer: Trainer, method: Method, split: Split, desc: str = "eval") -> Outputs:
    """``Trainer.predict`` for on-disk inputs: evaluation geometry, in order, on the device."""
    from benchmark.training import _float32, predict_with_attrs

    assert method.model is not None
    method.model.to(trainer.device).eval()
    inputs: ImageFiles = split.inputs
    mode = decode_path(inputs, trainer.device, progress=trainer.progress)
    stream = Stream(inputs, mode, trainer.device, seed=trainer.seed)
    chunks = _chunks(len(split), min(trainer.eval_batch_size, EVAL_BATCH))
    parts = []
    try:
        batches = stream.batches(chunks)
        bar = progress_bar(
            batches,
            desc=desc,
            unit="batch",
            enabled=trainer.progress,
            leave=False,
            total=len(chunks),
        )
        for x, positions in bar:
            x = trainer.normalise(x, method.info)
            with autocast(trainer.device):
                out = predict_with_attrs(method, x, split, positions, trainer.device)
            parts.append(_float32(out))
    finally:
        stream.close()
    return Outputs.cat(parts)


def measure(
    inputs: ImageFiles,
    mode: str,
    device: torch.device,
    *,
    images: int = 2000,
    batch_size: int = 256,
    workers: int | None = None,
    train: bool = True,
    ops: str | None = None,
) -> float:
    """Images per second that the decode path ``mode`` delivers to ``device`` (training
    augmentation when ``train``), over the first ``images`` images, worker start-up included;
    ``ops`` as in ``Stream``."""
    n = min(images, len(inputs))
    start = time.perf_counter()
    stream = Stream(inputs, mode, device, workers=workers, ops=ops)
    try:
        for _ in stream.batches(_chunks(n, batch_size), 0 if train else -1):
            pass
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    finally:
        stream.close()
    return n / (time.perf_counter() - start)
