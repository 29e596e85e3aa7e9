"""Mean IoU between saliency maps and ground-truth object masks.

Recipe ``thr0.5`` (default; Attention Lattice Adapter's ``compute_miou``): per image, min-max
normalise the map to [0, 1], resize it bilinearly to the mask's size, foreground = pixels
> 0.5 (strict); IoU = |P ∩ G| / |P ∪ G| with the mask binarised at 0.5 after scaling to
[0, 1]; mIoU = mean over images. Masks: bool, integers in {0, 1}, floats in [0, 1], or uint8
0..255 (scaled by 1/255), except that a uint8 mask whose maximum is 1 is read as {0, 1}
(``benchmark.metric.as_mask``; each mask on its own).

Recipe ``mean`` (Chefer et al., CVPR 2021, ImageNet-Segmentation test): foreground = pixels
of the normalised map above its own mean; background and foreground intersections and unions
are summed over the dataset, and mIoU is the mean of the two classes' IoU.

Run metrics: ``miou`` (recipe ``thr0.5``, key ``miou``) and ``miou-mean`` (recipe ``mean``,
key ``miou_mean``), on the explanation protocol's images
(``benchmark.tracks.explain.explained_subset``: labelled images with non-empty masks, at most
1000 / #classes per class; ``n_images``, ``n_empty`` and ``cap_per_class`` in the details).

In both recipes an image whose mask is empty is excluded and counted (``n_empty_masks``); a
constant map has an empty foreground (IoU 0 under ``thr0.5``). When every mask is empty, mIoU
is undefined: NaN with the reason (an ``UndefinedMetricWarning`` from the functions, the
``undefined`` detail in a run record), never a silent NaN.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from benchmark import EvalView, Metric, register_metric
from benchmark.errors import BenchError, UnknownNameError
from benchmark.imagefiles import take
from benchmark.metric import as_mask, check_same_length, warn_undefined
from benchmark.tracks.explain import explained_subset

RECIPES = ("thr0.5", "mean")
#: pixels per chunk of images (bounds memory; chunks stay in cache on the CPU)
CHUNK_PIXELS = {"cpu": 2**18, "cuda": 2**26}


def _maps(x: Any, name: str, device: torch.device | None = None) -> torch.Tensor:
    t = x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if device is not None:
        t = t.to(device)
    if t.ndim == 4 and t.shape[1] == 1:
        t = t[:, 0]
    if t.ndim != 3:
        raise BenchError(f"{name} must be (N, H, W) maps, got shape {tuple(t.shape)}")
    return t


def binary_masks(masks: Any, device: torch.device | None = None) -> torch.Tensor:
    """Object masks (N, H, W) as bool: > 0.5 after scaling to [0, 1] (uint8 by 1/255, or as
    {0, 1} when a mask's maximum is 1); other integers than 0/1, NaN and floats outside [0, 1]
    are a ``BenchError``."""
    return as_mask(_maps(masks, "masks", device), name="masks", soft=True)


def normalised_maps(saliency: Any, size: tuple[int, int]) -> torch.Tensor:
    """Per-image min-max normalisation to [0, 1] in float64 (a constant map becomes 0), then
    bilinear resizing to ``size``."""
    s = _maps(saliency, "saliency")
    if s.is_floating_point() and not bool(torch.isfinite(s).all()):
        raise BenchError("saliency contains NaN or infinite values")
    s = s.double()
    flat = s.flatten(1)
    lo, hi = flat.min(dim=1).values.view(-1, 1, 1), flat.max(dim=1).values.view(-1, 1, 1)
    span = hi - lo
    s = torch.where(span > 0, (s - lo) / torch.where(span > 0, span, 1.0), 0.0)
    if tuple(s.shape[1:]) != tuple(size):
        s = F.interpolate(s[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    return s


def _miou(saliency: Any, masks: Any, recipe: str = "thr0.5") -> dict[str, Any]:
    if recipe not in RECIPES:
        raise UnknownNameError("mIoU recipe", recipe, RECIPES)
    device = next((t.device for t in (saliency, masks) if isinstance(t, torch.Tensor)), None)
    sal, gt = _maps(saliency, "saliency", device), _maps(masks, "masks", device)
    n = check_same_length(saliency=sal, masks=gt)
    size = tuple(gt.shape[1:])
    chunk = max(1, CHUNK_PIXELS["cuda" if gt.is_cuda else "cpu"] // (size[0] * size[1]))
    per_image, n_empty = [], 0
    inter = torch.zeros(2, dtype=torch.float64, device=gt.device)  # background, foreground
    union = torch.zeros_like(inter)
    for i in range(0, n, chunk):
        g = binary_masks(gt[i : i + chunk])
        s = normalised_maps(sal[i : i + chunk], size)
        present = g.flatten(1).any(dim=1)
        n_empty += int((~present).sum())
        s, g = s[present], g[present]
        if recipe == "thr0.5":
            fg = s > 0.5
            i_img = (fg & g).flatten(1).sum(dim=1).double()
            per_image.append(i_img / (fg | g).flatten(1).sum(dim=1).double())
        else:
            fg = s > s.flatten(1).mean(dim=1).view(-1, 1, 1)
            for c, (pred, true) in enumerate(((~fg, ~g), (fg, g))):
                inter[c] += (pred & true).sum()
                union[c] += (pred | true).sum()
    out: dict[str, Any] = {"n_images": n - n_empty, "n_empty_masks": n_empty}
    if n_empty == n:
        reason = f"all {n} masks are empty (no object pixel > 0.5 after scaling to [0, 1])"
        return {"miou": float("nan"), **out, "undefined": {"miou": reason}}
    if recipe == "thr0.5":
        iou = torch.cat(per_image)
        return {"miou": float(iou.mean()), **out, "per_image": iou.tolist()}
    ious = (inter[union > 0] / union[union > 0]).tolist()  # background, foreground
    return {"miou": sum(ious) / len(ious), **out, "per_class": ious}


def miou_details(saliency: Any, masks: Any, recipe: str = "thr0.5") -> dict[str, Any]:
    """``{"miou", "n_images", "n_empty_masks", "per_image" (thr0.5) or "per_class" (mean)}``
    (see ``miou``); an undefined mIoU (every mask empty) adds ``"undefined": {"miou": reason}``
    and warns (``UndefinedMetricWarning``)."""
    r = _miou(saliency, masks, recipe)
    warn_undefined(r.get("undefined", {}))
    return r


def miou(saliency: Any, masks: Any, recipe: str = "thr0.5") -> float:
    """Mean IoU of saliency maps (N, H, W) with object masks (N, H', W'); see the recipes.

    Masks: bool, 0/1 integers, floats in [0, 1], or uint8 0..255 (a uint8 mask whose maximum
    is 1 is 0/1). NaN when every mask is empty, with an ``UndefinedMetricWarning``.
    """
    r = _miou(saliency, masks, recipe)
    warn_undefined(r.get("undefined", {}))
    return r["miou"]


@register_metric("miou")
class MeanIoU(Metric):
    """mIoU of the min-max normalised saliency map thresholded at 0.5 vs the object mask, on
    the explanation protocol's images (``benchmark.tracks.explain.explained_subset``: non-empty
    masks, at most 1000 / #classes per class); the count is in the details."""

    requires = ("saliency", "attr:mask")
    higher_is_better = {"miou": True}
    recipe = "thr0.5"
    key = "miou"
    convention = (
        "recipe thr0.5: min-max map > 0.5 vs mask > 0.5, mean IoU over images with non-empty "
        "masks, at most 1000/#classes per class"
    )
    functions = {"miou": miou, "miou_details": miou_details}

    def _result(self, view: EvalView) -> dict[str, Any]:
        cached = getattr(self, "_cache", None)
        if cached is None or cached[0] is not view:
            idx, info = explained_subset(view)
            dev = view.outputs.saliency.device
            if len(idx) == 0:
                reason = f"all {info['n_empty_masks']} masks are empty (no image to score)"
                r = {"miou": float("nan"), "n_images": 0, "undefined": {"miou": reason}}
            else:
                masks = take(view.attrs["mask"], idx)
                r = _miou(view.outputs.saliency[idx.to(dev)], masks, self.recipe)
            r["n_empty_masks"] = info["n_empty_masks"]  # excluded before the cap
            r["cap_per_class"] = info["cap_per_class"]
            self._cache = (view, r)
        return self._cache[1]

    def compute(self, view: EvalView) -> dict[str, float]:
        return {self.key: self._result(view)["miou"]}

    def details(self, view: EvalView) -> dict[str, Any]:
        r = self._result(view)
        out = {
            "recipe": self.recipe,
            "n_images": r["n_images"],
            "n_empty": r["n_empty_masks"],
            "cap_per_class": r["cap_per_class"],
        }
        return {**out, "undefined": r["undefined"]} if "undefined" in r else out


@register_metric("miou-mean")
class MeanIoUMeanThreshold(MeanIoU):
    """mIoU with recipe ``mean`` (Chefer et al., CVPR 2021): map above its own mean vs the
    mask, background and foreground IoU over the dataset, averaged (key ``miou_mean``)."""

    higher_is_better = {"miou_mean": True}
    recipe = "mean"
    key = "miou_mean"
    convention = (
        "recipe mean: min-max map > its mean vs mask > 0.5, dataset-level IoU of background "
        "and foreground averaged; images with non-empty masks, at most 1000/#classes per class"
    )
    functions = {}
