"""Building blocks of the post-hoc explainers: the last feature map of a classifier, CAM,
Grad-CAM, RISE masks and their batched scoring, and the normalisation of a map to the input.

Notation: ``A`` the backbone's last feature map (B, K, h, w) (``Backbone.forward_map``; ResNet
``layer4``), ``y`` logits (B, C), ``c`` the explained class per image (B,) (default: the top-1
prediction, as every paper's code). Maps returned to the harness (``Outputs.saliency``) are
(B, H, W) at the input size, bilinearly upsampled (``align_corners=False``) and min-max
normalised per image to [0, 1] (a constant map becomes 0): larger = more important.

The method plugins (``methods/cam.py``, ``gradcam.py``, ``rise.py``, ``random_saliency.py``,
``center_saliency.py``) are recipes built from these functions.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.backbones import Backbone
from benchmark.errors import BenchError
from benchmark.method import Method
from benchmark.outputs import Outputs


# -- the classifier's last feature map ---------------------------------------------------
def check_cam_model(model: nn.Module) -> None:
    """CAM-style explainers read ``model.backbone.forward_map`` and ``model.head``: the
    features must be the global average pool of that map (``Backbone.forward``, not an
    override). Raises ``BenchError`` otherwise."""
    backbone = getattr(model, "backbone", None)
    if not isinstance(backbone, Backbone) or not hasattr(model, "head"):
        raise BenchError("CAM-style explainers need a classifier with .backbone and .head")
    if type(backbone).forward is not Backbone.forward:
        raise BenchError(
            f"backbone {type(backbone).__name__} does not pool its forward_map: "
            "CAM/Grad-CAM cannot read its last feature map"
        )


def feature_map(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The last feature map ``A`` (B, K, h, w) of a ``Classifier`` (``forward_map``)."""
    return model.backbone.forward_map(x)


def logits_from_map(model: nn.Module, fmap: torch.Tensor) -> torch.Tensor:
    """The classifier's logits from its last feature map: ``head(GAP(A))``."""
    return model.head(fmap.mean(dim=(2, 3)))


# -- maps ----------------------------------------------------------------------------------
def to_input_size(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, h, w) maps -> (B, H, W): bilinear upsampling (``align_corners=False``, the torch
    equivalent of ``cv2.resize``'s half-pixel grid), then per-image min-max to [0, 1] in
    float32; a constant map becomes all zeros."""
    m = maps.float()
    if tuple(m.shape[1:]) != tuple(size):
        m = F.interpolate(m[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    return minmax(m)


def minmax(maps: torch.Tensor) -> torch.Tensor:
    """Per-image (x − min) / (max − min) of (B, H, W) maps; constant maps become 0."""
    flat = maps.flatten(1)
    lo = flat.min(dim=1).values.view(-1, 1, 1)
    span = flat.max(dim=1).values.view(-1, 1, 1) - lo
    ok = span > 0
    return torch.where(ok, (maps - lo) / torch.where(ok, span, torch.ones_like(span)), 0.0)


def predicted_class(logits: torch.Tensor) -> torch.Tensor:
    """The explained class: the top-1 prediction (CAM's, Grad-CAM's and RISE's default)."""
    return logits.float().argmax(dim=1)


def cam(model: nn.Module, x: torch.Tensor, target: torch.Tensor | None = None):
    """Class activation map (Zhou et al., CVPR 2016, Eq. 2): ``M_c = Σ_k w_ck A_k`` — the
    linear head's weights on the last feature map; no bias, no ReLU.

    Returns ``(logits (B, C), raw maps (B, h, w), class (B,))``; the head must be one
    ``nn.Linear`` on the pooled features."""
    check_cam_model(model)
    head = model.head
    if not isinstance(head, nn.Linear):
        raise BenchError(f"CAM needs a linear head on pooled features, not {type(head).__name__}")
    fmap = feature_map(model, x).float()
    logits = head(fmap.mean(dim=(2, 3)))
    c = predicted_class(logits) if target is None else target
    weights = head.weight.float()[c]  # (B, K)
    maps = torch.einsum("bk,bkhw->bhw", weights, fmap)
    return logits, maps, c


def grad_cam(model: nn.Module, x: torch.Tensor, target: torch.Tensor | None = None):
    """Grad-CAM (Selvaraju et al., ICCV 2017, Eqs. 1–2) on the last feature map, batched:
    ``α_k^c = mean_ij ∂y^c/∂A^k_ij`` (``y^c`` the logit before softmax), ``L^c = ReLU(Σ_k α_k^c
    A^k)``. One backward pass of ``Σ_b y_b^{c_b}`` gives every image's gradient (the model is
    in eval mode, so images do not interact). Gradients are enabled here even under the
    harness's ``no_grad`` inference; autocast is off (float32 maps).

    Returns ``(logits (B, C), raw L^c (B, h, w), class (B,))``."""
    check_cam_model(model)
    device_type = x.device.type
    with torch.no_grad(), torch.autocast(device_type, enabled=False):
        fmap = feature_map(model, x.float()).float()
    with torch.enable_grad(), torch.autocast(device_type, enabled=False):
        a = fmap.detach().requires_grad_(True)
        logits = logits_from_map(model, a)
        c = predicted_class(logits) if target is None else target
        score = logits.gather(1, c.view(-1, 1)).sum()
        (grad,) = torch.autograd.grad(score, a)
    alpha = grad.mean(dim=(2, 3))  # (B, K)
    maps = F.relu(torch.einsum("bk,bkhw->bhw", alpha, fmap))
    return logits.detach(), maps, c


# -- RISE ----------------------------------------------------------------------------------
#: (N masks, s cells per side, keep probability p1) by image side; see ``rise_settings``
RISE_SMALL = (2000, 8, 0.5)  # RISE Keras demo: small images, few masks
RISE_LARGE = (5000, 10, 0.1)  # RISE evaluation notebook (ResNet-50, ImageNet 224 px)


def rise_settings(side: int) -> tuple[int, int, float]:
    """RISE's (N, s, p1) for images of side ``side``: from the repo's sets (``methods.md``
    §9.1). Up to 64 px the Keras demo's (2000, 8, 0.5): 8×8 cells of 4–8 px fit objects
    covering 3–6 cells, and p1 = 0.5 keeps half of a small image so the classifier still sees
    a shape (p1 = 0.1 leaves mostly the mean colour at 32 px), with the fewest masks of the
    sets — each mask is a forward pass per image. Larger images: the evaluation notebook's
    (5000, 10, 0.1), the setting of the published ResNet-50 ImageNet numbers."""
    return RISE_SMALL if side <= 64 else RISE_LARGE


def _bilinear_weights(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in) weights of 1-D linear interpolation on the half-pixel grid with mirror
    boundaries: ``skimage.transform.resize(order=1, mode="reflect", anti_aliasing=False)``
    (= ``scipy.ndimage.zoom(grid_mode=True, mode="mirror")``)."""
    w = torch.zeros(n_out, n_in, dtype=torch.float64)
    src = (torch.arange(n_out, dtype=torch.float64) + 0.5) * n_in / n_out - 0.5
    i0 = torch.floor(src).long()
    f = src - i0

    def mirror(i: torch.Tensor) -> torch.Tensor:
        if n_in == 1:
            return torch.zeros_like(i)
        period = 2 * (n_in - 1)
        i = torch.remainder(i, period)
        return torch.where(i >= n_in, period - i, i)

    rows = torch.arange(n_out)
    w.index_put_((rows, mirror(i0)), 1 - f, accumulate=True)
    w.index_put_((rows, mirror(i0 + 1)), f, accumulate=True)
    return w


def rise_masks(
    n: int,
    s: int,
    p1: float,
    size: tuple[int, int],
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """N RISE masks (N, H, W) in [0, 1] (Petsiuk et al., BMVC 2018, §3.2; ``generate_masks``
    of the official code): a binary s×s grid with P(1) = p1, upsampled bilinearly (mirror
    boundaries, no anti-aliasing) to ``(s + 1) · cell`` with ``cell = ceil(H / s)``, then
    cropped to H×W at a random shift in ``[0, cell)`` per axis. Random numbers come from
    ``generator`` (the method's ``rng``), drawn on ``device``."""
    h, w = size
    if s < 2 or not 0 < p1 <= 1 or n < 1:
        raise BenchError(f"RISE needs s ≥ 2, 0 < p1 ≤ 1, N ≥ 1; got s={s}, p1={p1}, N={n}")
    ch, cw = math.ceil(h / s), math.ceil(w / s)
    grid = (torch.rand(n, s, s, generator=generator, device=device) < p1).float()
    wy = _bilinear_weights(s, (s + 1) * ch).float().to(device)
    wx = _bilinear_weights(s, (s + 1) * cw).float().to(device)
    up = wy @ grid @ wx.T  # (N, (s+1)·ch, (s+1)·cw)
    dy = torch.randint(0, ch, (n,), generator=generator, device=device)
    dx = torch.randint(0, cw, (n,), generator=generator, device=device)
    rows = (dy.view(-1, 1) + torch.arange(h, device=device)).view(n, h, 1)
    cols = (dx.view(-1, 1) + torch.arange(w, device=device)).view(n, 1, w)
    return up[torch.arange(n, device=device).view(-1, 1, 1), rows, cols]


def rise_saliency(
    probs_fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    masks: torch.Tensor,
    p1: float,
    target: torch.Tensor,
    batch_size: int = 256,
) -> torch.Tensor:
    """RISE saliency (Petsiuk et al. 2018, Eq. 6; ``explain`` of the official code):
    ``S_c = (1 / (N · p1)) Σ_i P_c(x ⊙ M_i) · M_i`` for each image's ``target`` class, with the
    masks multiplying the **normalised** image (a masked pixel = the dataset mean) and ``P``
    the softmax probabilities (``probs_fn``). All (image, mask) pairs run through the model in
    batches of ``batch_size``. Returns (B, H, W) float32 maps (unnormalised)."""
    b, n = len(x), len(masks)
    flat = masks.reshape(n, -1).float()
    out = torch.zeros(b, flat.shape[1], dtype=torch.float32, device=x.device)
    total = b * n
    for j0 in range(0, total, batch_size):
        j = torch.arange(j0, min(total, j0 + batch_size), device=x.device)
        img, m = j // n, j % n
        batch = x[img] * masks[m].unsqueeze(1).to(x.dtype)
        p = probs_fn(batch).float()
        score = p[torch.arange(len(j), device=x.device), target[img]]  # (J,)
        out.index_add_(0, img, score.view(-1, 1) * flat[m])
    return (out / (n * p1)).view(b, *masks.shape[1:])


# -- floors --------------------------------------------------------------------------------
def center_map(size: tuple[int, int], device: torch.device | str = "cpu") -> torch.Tensor:
    """The centre prior (H, W) in [0, 1]: an isotropic Gaussian at the image centre with σ =
    a quarter of the shorter side, min-max normalised — the sanity floor a map must beat on
    data whose objects are near the centre."""
    h, w = size
    yy = torch.arange(h, device=device, dtype=torch.float32) - (h - 1) / 2
    xx = torch.arange(w, device=device, dtype=torch.float32) - (w - 1) / 2
    sigma = min(h, w) / 4
    g = torch.exp(-(yy.view(-1, 1) ** 2 + xx.view(1, -1) ** 2) / (2 * sigma**2))
    return minmax(g[None])[0]


# -- shared base of the explainer plugins ------------------------------------------------
class PosthocExplainer(Method):
    """Post hoc on a cached classifier (base ``erm``, no retraining): ``predict_batch`` adds
    a saliency map to the base's logits; ``predict_logits`` is the classifier alone (what
    Insertion/Deletion query). Explanation track only; the base may be any method with a
    ``Classifier`` (``--set base=NAME``)."""

    base = "erm"
    base_settable = True
    tracks = ("explain",)

    def predict_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def saliency(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(logits (B, C), maps (B, H, W) in [0, 1] at input size, raw maps or None)."""
        raise NotImplementedError

    def predict_batch(self, x: torch.Tensor) -> Outputs:
        logits, maps, raw = self.saliency(x)
        probs = torch.softmax(logits.float(), dim=1)
        extras = {} if raw is None else {"saliency_raw": raw.float()}
        return Outputs(
            logits=logits,
            ood_score=probs.max(dim=1).values,
            ood_score_kind="msp",
            saliency=maps.float(),
            extras=extras,
        )


# -- which images the explanation metrics score -------------------------------------------
#: the protocol's image budget: at most 1000 / #classes images per class (``methods.md`` §9.3)
EXPLAIN_BUDGET = 1000


def explained_subset(view) -> tuple[torch.Tensor, dict[str, int]]:
    """Rows of an ``EvalView`` that the explanation metrics score, and the counts: labelled
    images whose object mask is non-empty (> 0.5 after scaling to [0, 1]), the first
    ``max(1, 1000 // #classes)`` of each class in split order (the Keio protocol's
    evaluation subset). Cached on the view (every explanation metric scores the same rows).
    Returns ``(indices (M,) long on the CPU, {"n_images", "n_empty_masks",
    "cap_per_class"})``."""
    cached = getattr(view, "_explained_subset", None)
    if cached is not None:
        return cached
    from benchmark.imagefiles import take
    from benchmark.metric import as_mask

    labels = view.labels.cpu()
    masks = take(view.attrs["mask"])
    if masks.ndim == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    present = as_mask(masks, name="masks", soft=True).flatten(1).any(dim=1).cpu()
    keep = (labels >= 0) & present
    cap = max(1, EXPLAIN_BUDGET // max(1, view.num_classes))
    rank = torch.zeros_like(labels)
    seen: dict[int, int] = {}
    for i in torch.nonzero(keep).flatten().tolist():  # order of the split
        c = int(labels[i])
        rank[i] = seen.get(c, 0)
        seen[c] = rank[i].item() + 1
    idx = torch.nonzero(keep & (rank < cap)).flatten()
    info = {
        "n_images": len(idx),
        "n_empty_masks": int(((labels >= 0) & ~present).sum()),
        "cap_per_class": cap,
    }
    view._explained_subset = (idx, info)
    return idx, info
