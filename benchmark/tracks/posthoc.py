"""The post-hoc explainers' model-reading code: the last feature map of a CNN or a Vision
Transformer, CAM, batched Grad-CAM, the classifier's logits path, and the base class of the
post-hoc explainer plugins (``methods/cam.py``, ``gradcam.py``, ``rise.py``,
``random_saliency.py``, ``center_saliency.py``).

Why a module beside ``benchmark/tracks/explain.py``: the metric plugins ``metrics/miou.py`` and
``metrics/insertion_deletion.py`` import ``explain.py`` (``explained_subset``), so editing that
file changes the metrics hash and re-keys every record of every track. The map helpers that do
not change (``to_input_size``, ``minmax``, ``predicted_class``, the RISE masks and sums,
``center_map``) stay there; ``explain.py``'s older ``cam`` / ``grad_cam`` /
``check_cam_model`` / ``PosthocExplainer`` are superseded by the ones here (no plugin uses
them; remove them at the next change of the metric plugins).

Notation as in ``explain.py``: ``A`` the last feature map (B, K, h, w), ``y`` logits (B, C),
``c`` the explained class (B,) (default: the top-1 prediction).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.backbones import Backbone
from benchmark.errors import BenchError
from benchmark.tracks import explain
from benchmark.tracks.backbones import VisionTransformer
from benchmark.tracks.explain import predicted_class

# -- the classifier's last feature map ---------------------------------------------------
#: images per no-grad forward chunk on the CPU (see ``feature_map``)
CPU_CHUNK = 64


def vit_backbone(model: nn.Module) -> VisionTransformer | None:
    """The classifier's backbone when it is a Vision Transformer (``vit-tiny``,
    ``vit-micro``, ``vit-b16``), else None."""
    backbone = getattr(model, "backbone", None)
    return backbone if isinstance(backbone, VisionTransformer) else None


def check_cam_model(model: nn.Module) -> None:
    """CAM-style explainers read ``model.backbone.forward_map`` and ``model.head``: the
    features must be the global average pool of that map (``Backbone.forward``, not an
    override; a ViT with ``pool="gap"``). Raises ``BenchError`` otherwise."""
    backbone = getattr(model, "backbone", None)
    if not isinstance(backbone, Backbone) or not hasattr(model, "head"):
        raise BenchError("CAM-style explainers need a classifier with .backbone and .head")
    vit = vit_backbone(model)
    if vit is not None:
        if vit.pool != "gap":
            raise BenchError(
                f"cam needs features that average-pool the last feature map, but this ViT "
                f"pools its class token (pool={vit.pool!r}, e.g. vit-b16): use gradcam, or a "
                "base on a patch-pooled ViT (--set backbone=vit-tiny or vit-micro)"
            )
        return
    if type(backbone).forward is not Backbone.forward:
        raise BenchError(
            f"backbone {type(backbone).__name__} does not pool its forward_map: "
            "CAM/Grad-CAM cannot read its last feature map"
        )


def feature_map(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The last feature map ``A`` (B, K, h, w) of a ``Classifier`` (``forward_map``), without
    gradients. On the CPU the batch runs in chunks of ``CPU_CHUNK`` images in channels-last
    layout (oneDNN's native one: on one thread 1.5–2× faster than one NCHW batch of 256 for
    ``small-cnn``; the same numbers up to float rounding)."""
    with torch.no_grad():
        if x.device.type != "cpu" or x.ndim != 4:
            return model.backbone.forward_map(x)
        parts = [
            model.backbone.forward_map(x[k : k + CPU_CHUNK].contiguous(
                memory_format=torch.channels_last))
            for k in range(0, len(x), CPU_CHUNK)
        ]  # fmt: skip
        return torch.cat(parts).contiguous()


def logits_from_map(model: nn.Module, fmap: torch.Tensor) -> torch.Tensor:
    """The classifier's logits from its last feature map: ``head(GAP(A))``."""
    return model.head(fmap.mean(dim=(2, 3)))


def classifier_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model(x)`` without gradients; on the CPU in ``CPU_CHUNK`` chunks, channels-last
    (as ``feature_map``): the logits path of the post-hoc explainers and of RISE."""
    with torch.no_grad():
        if x.device.type != "cpu" or x.ndim != 4:
            return model(x)
        parts = [
            model(x[k : k + CPU_CHUNK].contiguous(memory_format=torch.channels_last))
            for k in range(0, len(x), CPU_CHUNK)
        ]
        return torch.cat(parts)


# -- maps ----------------------------------------------------------------------------------
def cam(model: nn.Module, x: torch.Tensor, target: torch.Tensor | None = None):
    """Class activation map (Zhou et al., CVPR 2016, Eq. 2): ``M_c = Σ_k w_ck A_k`` — the
    linear head's weights on the last feature map; no bias, no ReLU. On a ViT with
    ``pool="gap"`` ``A`` is its ``forward_map``: the last block's patch tokens after
    ``ln_post`` (and ``proj``) on the patch grid, whose mean the head reads.

    Returns ``(logits (B, C), raw maps (B, h, w), class (B,))``; the head must be one
    ``nn.Linear`` on the pooled features."""
    check_cam_model(model)
    head = model.head
    if not isinstance(head, nn.Linear):
        raise BenchError(f"CAM needs a linear head on pooled features, not {type(head).__name__}")
    with torch.autocast(x.device.type, enabled=False):
        fmap = feature_map(model, x.float())
        with torch.no_grad():
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

    CNN (GAP + head): ``A`` = ``forward_map``, computed once without gradients; the backward
    pass runs through the pool and the head only. ViT: see ``vit_grad_cam``.

    Returns ``(logits (B, C), raw L^c (B, h, w), class (B,))``."""
    vit = vit_backbone(model)
    if vit is not None:
        return vit_grad_cam(model, vit, x, target)
    check_cam_model(model)
    with torch.autocast(x.device.type, enabled=False):
        fmap = feature_map(model, x.float())
        with torch.enable_grad():
            a = fmap.detach().requires_grad_(True)
            logits = logits_from_map(model, a)
            c = predicted_class(logits) if target is None else target
            score = logits.gather(1, c.view(-1, 1)).sum()
            (grad,) = torch.autograd.grad(score, a)
    alpha = grad.mean(dim=(2, 3))  # (B, K)
    maps = F.relu(torch.einsum("bk,bkhw->bhw", alpha, fmap))
    return logits.detach(), maps, c


def vit_grad_cam(
    model: nn.Module, vit: VisionTransformer, x: torch.Tensor, target: torch.Tensor | None = None
):
    """Grad-CAM on a Vision Transformer, batched: ``A`` = the patch tokens (class token
    dropped) of the last block as its attention reads them (the output of its ``ln_1``),
    reshaped to the patch grid (D, H/patch, W/patch) — the ViT recipe of jacobgil's
    pytorch-grad-cam (target layer ``blocks[-1].norm1`` with a ``reshape_transform``). The
    last block's *output* patch tokens would give a zero gradient under class-token pooling
    (``vit-b16``: only the class token reaches the head), so the recipe taps the block's input.
    The blocks before the last run once without gradients; one backward pass of the sum of
    the selected logits goes through the last block and the head.

    Returns ``(logits (B, C), raw L^c (B, H/patch, W/patch), class (B,))``."""
    if not hasattr(model, "head"):
        raise BenchError("Grad-CAM needs a classifier with .backbone and .head")
    last = vit.transformer.resblocks[-1]
    taps: list[torch.Tensor] = []

    def leaf(_module: nn.Module, _inputs: tuple, out: torch.Tensor) -> torch.Tensor:
        a = out.detach().requires_grad_(True)
        taps.append(a)
        return a

    with torch.autocast(x.device.type, enabled=False):
        with torch.no_grad():
            tokens = vit.embed(x.float())
            for block in vit.transformer.resblocks[:-1]:
                tokens = block(tokens)
        with torch.enable_grad():
            handle = last.ln_1.register_forward_hook(leaf)
            try:
                logits = model.head(vit.pooled(last(tokens)))
            finally:
                handle.remove()
            c = predicted_class(logits) if target is None else target
            score = logits.gather(1, c.view(-1, 1)).sum()
            (grad,) = torch.autograd.grad(score, taps[0])
    a, grad = taps[0].detach()[:, 1:], grad[:, 1:]  # (B, g, D): patch tokens only
    alpha = grad.mean(dim=1)  # (B, D)
    maps = F.relu(torch.einsum("bd,bgd->bg", alpha, a)).view(len(x), *vit.grid)
    return logits.detach(), maps, c


# -- shared base of the explainer plugins ------------------------------------------------
class PosthocExplainer(explain.PosthocExplainer):
    """``explain.PosthocExplainer`` (post hoc on a cached classifier, base ``erm``; a saliency
    map beside the base's logits) whose ``predict_logits`` — what Insertion/Deletion query —
    is ``classifier_logits``."""

    def predict_logits(self, x: torch.Tensor) -> torch.Tensor:
        return classifier_logits(self.model, x)
