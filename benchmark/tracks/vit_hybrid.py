"""Hybrid Vision Transformers: a ViT whose patch embedding reads a CNN feature map.

Dosovitskiy et al., "An Image is Worth 16x16 Words", ICLR 2021, §3.1 *Hybrid Architecture*:
"the input sequence can be formed from feature maps of a CNN ... the patch embedding
projection E is applied to patches extracted from a CNN feature map ... the patches can have
spatial size 1x1" (their R50+ViT-B/16). Here the CNN is the first three convolutions of the
core's ``tiny-cnn`` (conv-BN-ReLU 8, 2x max-pool, 16, 2x max-pool, 32), i.e. a stride-4 map
of 32 channels, and the patch embedding is ViT's own ``conv1`` with 1x1 patches on it; the
transformer, class token, positional embedding, ``ln_pre`` / ``ln_post`` and pooling are the
plain ViT's (``benchmark.tracks.backbones.VisionTransformer``), so everything that reads a ViT
(ALA's lattice, Grad-CAM's ``ln_1`` tokens, CAM on patch-pooled ViTs) reads this one.

Why it exists: a ViT trained from scratch does not learn ``objects-masks`` in CPU minutes
(``vit-micro`` 19.8 ± 4.1%, ``vit-tiny`` 23.5% after 948 steps; README), so ALA's built-in
encoder could not show anything; with a convolutional stem (the remedy of Xiao et al.,
"Early Convolutions Help Transformers See Better", NeurIPS 2021, and of the ViT paper's
hybrids) the same transformer learns the six shapes like the CNN does.

A track module: it hashes with the plugins that import it (``ala``). ``erm`` does not import
it, so an ``erm`` run on ``vit-hybrid-tiny`` is keyed on ``erm``'s code without this file:
editing the classes below does not re-key those ``erm`` checkpoints (delete them by hand,
``bench cache``), the same caveat as ``occamnets``' ``resnet18`` registration (README).
"""

from __future__ import annotations

import torch

from benchmark.backbones import Backbone, SmallCNN, register_backbone
from benchmark.tracks.backbones import VisionTransformer


class HybridViT(VisionTransformer):
    """A ViT on a stride-4 CNN feature map with 1x1 patches (ViT-hybrid, ICLR 2021 §3.1).

    Input (N, C, H, W) with H and W multiples of 4; the grid is (H/4, W/4) tokens. ``stem``:
    ``tiny-cnn``'s first three conv-BN-ReLU layers with its two 2x max-pools (32 channels,
    Kaiming init as ``SmallCNN``). ``embed`` runs the stem, then the ViT's own embedding
    (``conv1`` 1x1 from 32 channels to ``width``, class token, positions, ``ln_pre``); the rest
    is ``VisionTransformer`` unchanged (``forward_map``: (N, width, H/4, W/4)).
    """

    def __init__(
        self,
        in_channels: int,
        image_size: tuple[int, int],
        width: int,
        layers: int,
        heads: int,
        stem_width: int = 8,
    ) -> None:
        h, w = image_size
        if h % 4 or w % 4:
            raise ValueError(f"a hybrid ViT needs sides that are multiples of 4, got {h}×{w}")
        stem = SmallCNN(in_channels, width=stem_width).body[:5]
        super().__init__(4 * stem_width, (h // 4, w // 4), 1, width, layers, heads, pool="gap")
        self.stem = stem

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """CNN stem, then the ViT embedding of its map (1x1 patches): (N, 1 + g, width)."""
        return super().embed(self.stem(x))


@register_backbone("vit-hybrid-tiny")
def vit_hybrid_tiny(input_shape: tuple[int, ...]) -> Backbone:
    """ViT-hybrid for the 32–64 px built-ins: ``tiny-cnn``'s stride-4 stem (32 channels), 1x1
    patches (an 8×8 grid at 32 px), width 64, 4 blocks, 2 heads, GELU, patch-token average
    pooling, 64-d features; random init. ``objects-masks``' protocol trains it to ≥ 95% in 12
    epochs (README); ALA's built-in encoder."""
    c, h, w = input_shape
    return HybridViT(c, (h, w), width=64, layers=4, heads=2)
