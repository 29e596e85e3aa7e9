"""Mean IoU between saliency maps and ground-truth object masks.

Recipe ``thr0.5`` (default; Attention Lattice Adapter's ``compute_miou``): per image, min-max
normalise the map to [0, 1], resize it bilinearly to the mask's size, foreground = pixels
> 0.5 (strict); IoU = |P ∩ G| / |P ∪ G| with the mask binarised at 0.5 (uint8 masks are
scaled by 1/255); mIoU = mean over images.

Recipe ``mean`` (Chefer et al., CVPR 2021, ImageNet-Segmentation test): foreground = pixels
of the normalised map above its own mean; background and foreground intersections and unions
are summed over the dataset, and mIoU is the mean of the two classes' IoU.

In both recipes an image whose mask is empty is excluded and counted (``n_empty_masks``); a
constant map has an empty foreground (IoU 0 under ``thr0.5``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from benchmark import EvalView, Metric, register_metric
from benchmark.errors import BenchError, UnknownNameError
from benchmark.metric import as_tensor, check_same_length

RECIPES = ("thr0.5", "mean")


def _maps(x: Any, name: str, device: torch.device | None = None) -> torch.Tensor:
    t = as_tensor(x, name=name, device=device)
    if t.ndim == 4 and t.shape[1] == 1:
        t = t[:, 0]
    if t.ndim != 3:
        raise BenchError(f"{name} must be (N, H, W) maps, got shape {tuple(t.shape)}")
    return t


def binary_masks(masks: Any, device: torch.device | None = None) -> torch.Tensor:
    """Object masks as bool: uint8 0–255 and floats in [0, 1] are thresholded at 0.5."""
    m = _maps(masks, "masks", device)
    if m.dtype == torch.bool:
        return m
    if m.dtype == torch.uint8:
        return m.double() / 255 > 0.5
    if not m.is_floating_point() and ((m != 0) & (m != 1)).any():
        raise BenchError("integer masks must be 0/1 (or pass uint8 0–255, bool, floats in [0, 1])")
    m = m.double()
    if (m < 0).any() or (m > 1).any():
        raise BenchError("float masks must lie in [0, 1]")
    return m > 0.5


def normalised_maps(saliency: Any, size: tuple[int, int], device: torch.device) -> torch.Tensor:
    """Per-image min-max normalisation to [0, 1] (a constant map becomes 0), then bilinear
    resizing to ``size``."""
    s = _maps(saliency, "saliency", device).double()
    flat = s.flatten(1)
    lo, hi = flat.min(dim=1).values, flat.max(dim=1).values
    span = (hi - lo).view(-1, 1, 1)
    s = torch.where(span > 0, (s - lo.view(-1, 1, 1)) / span.clamp(min=1e-300), 0.0)
    if tuple(s.shape[1:]) != tuple(size):
        s = F.interpolate(s[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    return s


def miou_details(saliency: Any, masks: Any, recipe: str = "thr0.5") -> dict[str, Any]:
    """``{"miou", "n_images", "n_empty_masks", "per_image" (thr0.5) or "per_class" (mean)}``."""
    if recipe not in RECIPES:
        raise UnknownNameError("mIoU recipe", recipe, RECIPES)
    device = next((t.device for t in (saliency, masks) if isinstance(t, torch.Tensor)), None)
    g = binary_masks(masks, device)
    s = normalised_maps(saliency, tuple(g.shape[1:]), g.device)
    check_same_length(saliency=s, masks=g)
    present = g.flatten(1).any(dim=1)
    s, g = s[present], g[present]
    out: dict[str, Any] = {"n_images": int(present.sum()), "n_empty_masks": int((~present).sum())}
    if len(g) == 0:
        return {"miou": float("nan"), **out}
    if recipe == "thr0.5":
        fg = s > 0.5
        inter = (fg & g).flatten(1).sum(dim=1).double()
        union = (fg | g).flatten(1).sum(dim=1).double()
        iou = inter / union
        return {"miou": float(iou.mean()), **out, "per_image": iou.tolist()}
    fg = s > s.flatten(1).mean(dim=1).view(-1, 1, 1)
    ious = []
    for pred, true in ((~fg, ~g), (fg, g)):  # background, foreground
        union = float((pred | true).sum())
        if union > 0:
            ious.append(float((pred & true).sum()) / union)
    return {"miou": sum(ious) / len(ious), **out, "per_class": ious}


def miou(saliency: Any, masks: Any, recipe: str = "thr0.5") -> float:
    """Mean IoU of saliency maps (N, H, W) with object masks (N, H', W'); see the recipes."""
    return miou_details(saliency, masks, recipe)["miou"]


@register_metric("miou")
class MeanIoU(Metric):
    """mIoU of the min-max normalised saliency map thresholded at 0.5 vs the object mask."""

    requires = ("saliency", "attr:mask")
    higher_is_better = {"miou": True}
    recipe = "thr0.5"
    convention = "recipe thr0.5: min-max map > 0.5 vs mask > 0.5, mean IoU over non-empty masks"
    functions = {"miou": miou, "miou_details": miou_details}

    def _result(self, view: EvalView) -> dict[str, Any]:
        cached = getattr(self, "_cache", None)
        if cached is None or cached[0] is not view:
            keep = view.labels >= 0
            r = miou_details(view.outputs.saliency[keep], view.attrs["mask"][keep], self.recipe)
            self._cache = (view, r)
        return self._cache[1]

    def compute(self, view: EvalView) -> dict[str, float]:
        return {"miou": self._result(view)["miou"]}

    def details(self, view: EvalView) -> dict[str, Any]:
        r = self._result(view)
        return {"recipe": self.recipe, "n_images": r["n_images"], "n_empty": r["n_empty_masks"]}
