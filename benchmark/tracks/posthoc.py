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

import weakref
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.fx.experimental.optimization import fuse

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


class _ForwardMap(nn.Module):
    """``backbone.forward_map`` as a module's ``forward`` (what ``fx`` traces)."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.training = backbone.training  # the wrapper's own mode follows the backbone's

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_map(x)


#: module -> {what: (state signature, inference copy)}; see ``folded``
_FOLDED: weakref.WeakKeyDictionary[nn.Module, dict[str, tuple[tuple, nn.Module]]] = (
    weakref.WeakKeyDictionary()
)


def _state(module: nn.Module) -> tuple:
    """What a folded copy depends on: every parameter's and buffer's storage and in-place
    version, and every submodule's train/eval mode."""
    tensors = [*module.parameters(), *module.buffers()]
    return (
        tuple((t.data_ptr(), t._version, t.device) for t in tensors),
        tuple(m.training for m in module.modules()),
    )


def folded(model: nn.Module, what: str = "forward") -> nn.Module:
    """An inference copy of ``model`` (``what="forward"``) or of ``model.backbone``'s
    ``forward_map`` (``what="map"``) in which every eval-mode ``BatchNorm`` that reads only a
    convolution's output is folded into that convolution (``W' = W·γ/√(σ²+ε)``, ``b' =
    (b−μ)·γ/√(σ²+ε)+β``; ``torch.fx.experimental.optimization.fuse``): the same function up
    to float rounding (≈1e-6 relative), one pass over each activation fewer (≈10% of a
    ``small-cnn`` forward on the CPU). Used only without gradients.

    Returns the module itself when there is nothing to fold (no BatchNorm), when any module
    is in training mode (the batch statistics are then not constants), or when ``fx`` cannot
    trace it. The copy is cached per model and rebuilt when a parameter or buffer changes
    (storage or in-place version) or a module's mode does."""
    source: nn.Module = model if what == "forward" else _ForwardMap(model.backbone)
    norms = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
    if not any(isinstance(m, norms) for m in source.modules()):
        return source
    if any(m.training for m in source.modules()):
        return source
    state = _state(model)
    cache = _FOLDED.setdefault(model, {})
    hit = cache.get(what)
    if hit is not None and hit[0] == state:
        return hit[1]
    try:
        with torch.no_grad():
            copy_: nn.Module = fuse(source)  # a traced deep copy
        copy_.requires_grad_(False).eval()
        if all(t.device.type == "cpu" for t in copy_.parameters()):
            copy_.to(memory_format=torch.channels_last)  # the layout its CPU inputs come in
    except Exception:  # untraceable control flow etc.: the model as it is (same numbers)
        copy_ = source
    cache[what] = (state, copy_)
    return copy_


def _chunked(net: Any, x: torch.Tensor) -> torch.Tensor:
    """``net(x)`` without gradients; on the CPU in ``CPU_CHUNK`` chunks, channels-last, each
    chunk's output copied into one contiguous result (no ``cat``, no second copy)."""
    with torch.no_grad():
        if x.device.type != "cpu" or x.ndim != 4 or len(x) == 0:
            return net(x)
        out: torch.Tensor | None = None
        for k in range(0, len(x), CPU_CHUNK):
            part = net(x[k : k + CPU_CHUNK].contiguous(memory_format=torch.channels_last))
            if out is None:
                out = part.new_empty((len(x), *part.shape[1:]))
            out[k : k + len(part)] = part
        assert out is not None
        return out


def feature_map(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The last feature map ``A`` (B, K, h, w) of a ``Classifier`` (``forward_map``), without
    gradients, through ``folded(model, "map")`` (BatchNorm folded into the convolutions). On
    the CPU the batch runs in chunks of ``CPU_CHUNK`` images in channels-last layout
    (oneDNN's native one: on one thread 1.5–2× faster than one NCHW batch of 256 for
    ``small-cnn``; the same numbers up to float rounding)."""
    return _chunked(folded(model, "map"), x)


def logits_from_map(model: nn.Module, fmap: torch.Tensor) -> torch.Tensor:
    """The classifier's logits from its last feature map: ``head(GAP(A))``."""
    return model.head(fmap.mean(dim=(2, 3)))


def classifier_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model(x)`` without gradients, through ``folded(model)`` (BatchNorm folded into the
    convolutions); on the CPU in ``CPU_CHUNK`` chunks, channels-last (as ``feature_map``): the
    logits path of the post-hoc explainers and of RISE."""
    return _chunked(folded(model), x)


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
