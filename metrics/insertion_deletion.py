"""Insertion / Deletion (Petsiuk, Das & Saenko, RISE, BMVC 2018, §4.1) and the ID score
(Insertion − Deletion) of the Attention Branch Network / Attention Lattice Adapter papers.

Pixels are ranked by saliency (descending; ties by ascending flat index; maps of another size
are resized bilinearly to the image) and changed ``step`` at a time; the model's probability
of the target class is read after each step, and the score is the area under that curve,
AUC = (Σ scores − first/2 − last/2) / (points − 1).

- protocol ``rise`` (RISE ``CausalMetric``): target = the class predicted on the clean image;
  224 pixels per step at 224×224 (224 steps + the unmodified start point); deletion replaces
  pixels with 0 in normalised input space; insertion starts from a Gaussian blur of the
  normalised image (11×11 kernel = ``scipy.ndimage.gaussian_filter`` of a delta, σ = 5, zero
  padding) and puts the original pixels back.
- protocol ``id`` (keio-smilab ``patch_insdel``): target = the ground-truth label; 500 pixels
  per step at 224×224; removed pixels are black in [0, 1] pixel space for both modes (insertion
  reveals pixels on black), then the image is normalised; no unmodified start point.

- protocol ``rise-batch`` (RISE ``CausalMetric.evaluate``, its batch evaluation): as ``rise``
  with 224 · 8 = 1792 pixels per step at 224×224 (28 steps + the start point).

At other image sizes the step is scaled with the pixel count so that the number of steps is
the papers' (224 for ``rise``, 101 for ``id``, 28 for ``rise-batch``).

Run metrics: ``insertion-deletion`` (keys ``insertion``, ``deletion``, ``id_score``; protocol
``id``) and ``insertion-deletion-rise`` (keys ``insertion_rise``, ``deletion_rise``,
``id_score_rise``; protocol ``rise-batch``, 8× cheaper than ``rise`` at the same start and
end points), both on the explanation protocol's images (non-empty masks, at most 1000 /
#classes per class; ``n_images`` in the details), querying the method's logits path
(``predict_logits``), never the explainer. All steps of many images are batched through
the model; the result equals a one-image, one-step loop (tested to 1e-5).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from benchmark import EvalView, Metric, register_metric
from benchmark.device import autocast
from benchmark.errors import BenchError, UnknownNameError
from benchmark.metric import as_labels, as_tensor, check_probabilities
from benchmark.progress import progress_bar
from benchmark.tracks.explain import explained_subset

REFERENCE_PIXELS = 224 * 224


@dataclass(frozen=True)
class Protocol:
    step: int  # pixels per step at 224×224
    target: str  # "pred" (class predicted on the clean image) or "label"
    start_point: bool  # the curve starts with the unmodified image
    substrate: str  # "blur-zero": RISE's; "black": black pixels in [0, 1] space


PROTOCOLS = {
    "rise": Protocol(step=224, target="pred", start_point=True, substrate="blur-zero"),
    "id": Protocol(step=500, target="label", start_point=False, substrate="black"),
    # RISE's batch evaluation (``CausalMetric.evaluate``): 224 · 8 pixels per step at 224²
    "rise-batch": Protocol(step=1792, target="pred", start_point=True, substrate="blur-zero"),
}


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise UnknownNameError("insertion/deletion protocol", name, PROTOCOLS)
    return PROTOCOLS[name]


def default_step(protocol: str, height: int, width: int) -> int:
    """The protocol's pixels per step, scaled to the image's pixel count."""
    return max(1, round(get_protocol(protocol).step * height * width / REFERENCE_PIXELS))


def pixel_counts(n_pixels: int, step: int, start_point: bool) -> list[int]:
    """How many top-ranked pixels are changed at each point of the curve."""
    n_steps = math.ceil(n_pixels / step)
    return [min(k * step, n_pixels) for k in range(0 if start_point else 1, n_steps + 1)]


@cache
def _gaussian_kernel(size: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """RISE's blur kernel: ``scipy.ndimage.gaussian_filter`` (reflect mode) of a delta."""
    from scipy.ndimage import gaussian_filter

    delta = torch.zeros(size, size, dtype=torch.float64)
    delta[size // 2, size // 2] = 1.0
    return torch.from_numpy(gaussian_filter(delta.numpy(), sigma))


def blur(x: torch.Tensor, size: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """Per-channel Gaussian blur with zero padding (RISE's insertion substrate)."""
    c = x.shape[1]
    k = _gaussian_kernel(size, sigma).to(x.device, x.dtype).expand(c, 1, size, size)
    return F.conv2d(x, k, padding=size // 2, groups=c)


def saliency_ranks(saliency: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, 1, H, W) rank of every pixel: 0 = most salient; ties by ascending flat index."""
    s = saliency.double()
    if tuple(s.shape[1:]) != tuple(size):
        s = F.interpolate(s[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    flat = s.flatten(1)
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    positions = torch.arange(flat.shape[1], device=flat.device).expand_as(order)
    ranks.scatter_(1, order, positions)
    return ranks.view(-1, 1, *size)


def auc(curves: torch.Tensor) -> torch.Tensor:
    """Normalised area under curves sampled at equal steps (last axis), the RISE formula."""
    if curves.shape[-1] < 2:
        raise BenchError("an insertion/deletion curve needs at least 2 points: lower the step")
    c = curves.double()
    return (c.sum(-1) - c[..., 0] / 2 - c[..., -1] / 2) / (c.shape[-1] - 1)


def _images01(images: Any, device: torch.device) -> torch.Tensor:
    x = as_tensor(images, name="images", device=device)
    if x.ndim != 4:
        raise BenchError(f"images must be (N, C, H, W), got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        return x.float() / 255
    x = x.float()
    if (x < 0).any() or (x > 1).any():
        raise BenchError(
            "images must be uint8 or floats in [0, 1] pixel space; "
            "pass the model's input normalisation as normalise="
        )
    return x


def curves(
    probs_fn: Callable[[torch.Tensor], torch.Tensor],
    images: Any,
    saliency: Any,
    labels: Any = None,
    protocol: str = "rise",
    normalise: Callable[[torch.Tensor], torch.Tensor] | None = None,
    step: int | None = None,
    batch_size: int = 256,
    progress: bool = False,
) -> dict[str, torch.Tensor]:
    """Per-image insertion and deletion curves ``(N, points)`` and the pixel fractions.

    ``probs_fn`` maps a batch of model inputs to class probabilities; ``images`` are uint8 or
    [0, 1] floats (N, C, H, W) (anything sliceable into such tensors; a slice at a time is
    moved to the saliency's device); ``normalise`` maps [0, 1] images to model inputs
    (identity when None).
    """
    p = get_protocol(protocol)
    sal = as_tensor(saliency, name="saliency")
    if sal.ndim == 4 and sal.shape[1] == 1:
        sal = sal[:, 0]
    device = sal.device
    n = len(images)
    if sal.ndim != 3 or len(sal) != n:
        raise BenchError(f"saliency must be (N, H, W) with N = {n} images, got {tuple(sal.shape)}")
    if n == 0:
        raise BenchError("no images to evaluate")
    first = _images01(images[:1], device)
    _, _, h, w = first.shape
    norm = normalise or (lambda t: t)
    step = default_step(protocol, h, w) if step is None else int(step)
    if step < 1:
        raise BenchError(f"step must be a positive number of pixels, got {step}")
    counts = torch.tensor(pixel_counts(h * w, step, p.start_point), device=device)
    n_points = len(counts)
    if n_points < 2:
        raise BenchError(f"step {step} leaves fewer than 2 curve points for {h}×{w} images")
    if p.target == "label":
        if labels is None:
            raise BenchError(f"protocol {protocol!r} scores the ground-truth class: pass labels")
        target = as_labels(labels, device=device)
        if len(target) != n:
            raise BenchError(f"labels has {len(target)} rows, images {n}")
        if int(target.min()) < 0:
            raise BenchError("labels must be non-negative class indices")

    out = torch.empty(n, 2, n_points, dtype=torch.float64, device=device)  # ins, del
    targets = torch.empty(n, dtype=torch.long, device=device)
    per_image = 2 * n_points
    group = max(1, (4 * batch_size) // per_image)
    for g0 in progress_bar(
        range(0, n, group), enabled=progress, desc="insertion/deletion", unit="group", leave=False
    ):
        g1 = min(n, g0 + group)
        xg = _images01(images[g0:g1], device)
        if tuple(xg.shape[1:]) != tuple(first.shape[1:]):
            raise BenchError("images differ in shape")
        ranks = saliency_ranks(sal[g0:g1], (h, w))
        if p.target == "label":
            tg = target[g0:g1]
        else:
            tg = probs_fn(norm(xg)).argmax(1)
        targets[g0:g1] = tg
        if p.substrate == "blur-zero":  # in normalised space
            xn = norm(xg).float()
            start = torch.stack([blur(xn), xn])
            finish = torch.stack([xn, torch.zeros_like(xn)])
        else:  # black in [0, 1] pixel space, normalised afterwards
            start = torch.stack([torch.zeros_like(xg), xg])
            finish = torch.stack([xg, torch.zeros_like(xg)])
        jobs = (g1 - g0) * per_image
        size = math.ceil(jobs / math.ceil(jobs / batch_size))
        for j0 in range(0, jobs, size):
            j = torch.arange(j0, min(jobs, j0 + size), device=device)
            img, mode, k = j // per_image, (j // n_points) % 2, j % n_points
            changed = ranks[img] < counts[k].view(-1, 1, 1, 1)
            batch = torch.where(changed, finish[mode, img], start[mode, img])
            if p.substrate == "black":
                batch = norm(batch)
            probs = probs_fn(batch)
            if j0 == 0:  # the model's outputs must be probabilities (dtype-aware tolerance)
                check_probabilities(probs, name="the model's probabilities")
            probs = probs.float()
            if j0 == 0 and int(tg.max()) >= probs.shape[1]:
                raise BenchError(f"a label is ≥ the model's {probs.shape[1]} classes")
            out[g0 + img, mode, k] = probs[torch.arange(len(j), device=device), tg[img]].double()
    if not bool(torch.isfinite(out).all()):
        raise BenchError("the model gave NaN or infinite probabilities on perturbed images")
    return {
        "insertion": out[:, 0],
        "deletion": out[:, 1],
        "fraction": counts.double() / (h * w),
        "target": targets,
    }


def insertion_deletion(
    model: Callable[[torch.Tensor], torch.Tensor],
    images: Any,
    saliency: Any,
    labels: Any = None,
    protocol: str = "rise",
    *,
    normalise: Callable[[torch.Tensor], torch.Tensor] | None = None,
    outputs: str = "logits",
    step: int | None = None,
    batch_size: int = 256,
    amp: bool = False,
) -> dict[str, Any]:
    """Insertion, Deletion and ID score (= Insertion − Deletion), means over images, plus the
    mean curves (``insertion_curve``, ``deletion_curve`` at pixel ``fraction``s).

    ``model`` maps model inputs to logits (``outputs="probs"``: to probabilities); a module is
    put in eval mode for the call. ``images``: uint8 or [0, 1] floats (N, C, H, W), on the
    device the model runs on; ``normalise``: [0, 1] images -> model inputs (default identity).
    ``labels`` are needed by protocol ``id``; ``rise`` scores the clean prediction and does
    not use them. ``amp``: bf16 autocast on CUDA.
    """
    if outputs not in ("logits", "probs"):
        raise BenchError(f"outputs must be 'logits' or 'probs', got {outputs!r}")
    was_training = isinstance(model, nn.Module) and model.training
    if isinstance(model, nn.Module):
        model.eval()

    @torch.no_grad()
    def probs_fn(x: torch.Tensor) -> torch.Tensor:
        if amp:
            with autocast(x.device):
                y = model(x)
        else:
            y = model(x)
        return torch.softmax(y.float(), dim=1) if outputs == "logits" else y

    try:
        r = curves(probs_fn, images, saliency, labels, protocol, normalise, step, batch_size)
    finally:
        if was_training:
            model.train()
    ins, dels = auc(r["insertion"]), auc(r["deletion"])
    return {
        "insertion": float(ins.mean()),
        "deletion": float(dels.mean()),
        "id_score": float((ins - dels).mean()),
        "insertion_curve": r["insertion"].mean(0).tolist(),
        "deletion_curve": r["deletion"].mean(0).tolist(),
        "fraction": r["fraction"].tolist(),
    }


@register_metric("insertion-deletion")
class InsertionDeletion(Metric):
    """Insertion / Deletion AUC of the saliency maps and ID score (protocol id), on the
    explanation protocol's images (``benchmark.tracks.explain.explained_subset``: non-empty
    masks, at most 1000 / #classes per class). The model is the method's logits path
    (``predict_logits``), never the explainer."""

    requires = ("saliency", "model", "inputs", "labels")
    higher_is_better = {"insertion": True, "deletion": False, "id_score": True}
    tracks = ("explain",)
    protocol = "id"
    suffix = ""
    convention = (
        "protocol id: ground-truth class prob, black in [0,1] space, 500 px/step at 224² "
        "(scaled with image area), no start point; id_score = insertion − deletion; images "
        "with non-empty masks, at most 1000/#classes per class"
    )
    functions = {"insertion_deletion": insertion_deletion}

    def _result(self, view: EvalView) -> dict[str, Any] | None:
        cached = getattr(self, "_cache", None)
        if cached is None or cached[0] is not view:
            idx, info = explained_subset(view)
            dev = view.outputs.saliency.device
            if len(idx) == 0:
                self._cache = (view, None)
                return None
            r = curves(
                view.model_probs,
                view.inputs[idx],
                view.outputs.saliency[idx.to(dev)],
                view.labels[idx.to(view.labels.device)],
                self.protocol,
                view.normalise,
            )
            r["n_images"] = info["n_images"]
            self._cache = (view, r)
        return self._cache[1]

    def compute(self, view: EvalView) -> dict[str, float]:
        r = self._result(view)
        if r is None:  # no image with a non-empty mask: undefined, reason in the details
            return {k: float("nan") for k in self.higher_is_better}
        ins, dels = auc(r["insertion"]), auc(r["deletion"])
        return {
            f"insertion{self.suffix}": float(ins.mean()),
            f"deletion{self.suffix}": float(dels.mean()),
            f"id_score{self.suffix}": float((ins - dels).mean()),
        }

    def details(self, view: EvalView) -> dict[str, Any]:
        r = self._result(view)
        if r is None:
            reason = "no image with a non-empty mask to score"
            return {"protocol": self.protocol, "n_images": 0, "undefined": {"insertion": reason}}
        return {
            "protocol": self.protocol,
            "n_images": r["n_images"],
            "fraction": [round(v, 6) for v in r["fraction"].tolist()],
            "insertion_curve": [round(v, 6) for v in r["insertion"].mean(0).tolist()],
            "deletion_curve": [round(v, 6) for v in r["deletion"].mean(0).tolist()],
        }


@register_metric("insertion-deletion-rise")
class InsertionDeletionRise(InsertionDeletion):
    """Insertion / Deletion / ID score under RISE's protocol (keys ``insertion_rise``,
    ``deletion_rise``, ``id_score_rise``): the clean prediction's probability, blur and
    zero substrates in normalised space, RISE's batch step (28 steps + start at any size)."""

    higher_is_better = {"insertion_rise": True, "deletion_rise": False, "id_score_rise": True}
    protocol = "rise-batch"
    suffix = "_rise"
    convention = (
        "protocol rise-batch: clean top-1 prob, insertion from blur (11×11, σ=5), deletion to 0 "
        "in normalised space, 1792 px/step at 224² (28 steps + start, scaled with image "
        "area); id_score_rise = insertion_rise − deletion_rise; same images as insertion-deletion"
    )
    functions = {}
