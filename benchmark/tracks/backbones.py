"""Backbones the bias, OoD and explanation tracks add to the shared registry.

A track module, not the core: it hashes with every plugin that imports it. ``erm`` (the
baseline of every track) and each track module import it, so a record of any run on one of
these backbones changes key when this file changes. Register with
``@register_backbone("name")`` on a factory ``(C, H, W) -> Backbone`` (see
``benchmark.backbones``: ``forward_map`` gives the last feature map, ``forward`` its global
average pool, ``feature_dim`` the width).
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn

from benchmark.backbones import Backbone, _conv_bn, register_backbone


# -- bias track ------------------------------------------------------------------------------
class BiasCNN(Backbone):
    """A CPU backbone for cluttered 40–80 px canvases (``biased-mnist``): a stride-2 stem
    (w), then w→2w, 2× max-pool, 2w→4w, 2× max-pool, 4w→4w (3×3 conv-BN-ReLU each), and a
    global *max* pool, so a digit anywhere on the canvas reaches the features (receptive
    field ≈ 50 px at the stem's stride). Kaiming-normal (fan-out) init."""

    def __init__(self, in_channels: int, width: int = 16) -> None:
        super().__init__()
        w = width
        self.body = nn.Sequential(
            _conv_bn(in_channels, w, 2),
            _conv_bn(w, 2 * w),
            nn.MaxPool2d(2),
            _conv_bn(2 * w, 4 * w),
            nn.MaxPool2d(2),
            _conv_bn(4 * w, 4 * w),
        )
        self.feature_dim = 4 * w
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_map(x).amax(dim=(2, 3))


@register_backbone("bias-cnn")
def bias_cnn(input_shape: tuple[int, ...]) -> Backbone:
    """``BiasCNN`` of width 16 (64-d features)."""
    return BiasCNN(input_shape[0], width=16)


class MLP(Backbone):
    """LfF's Colored-MNIST network (``module/mlp.py``): flatten → 3 × (Linear(→100) → ReLU);
    the features are the last hidden layer (100-d; the head is LfF's last Linear(100→C)).
    No feature map: ``forward_map`` gives the features as a 1×1 map."""

    def __init__(self, input_shape: tuple[int, ...], hidden: int = 100, layers: int = 3) -> None:
        super().__init__()
        dims = [math.prod(input_shape), *([hidden] * layers)]
        body: list[nn.Module] = [nn.Flatten()]
        for a, b in itertools.pairwise(dims):
            body += [nn.Linear(a, b), nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*body)
        self.feature_dim = hidden

    def forward_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)[:, :, None, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@register_backbone("mlp")
def mlp(input_shape: tuple[int, ...]) -> Backbone:
    """LfF's MLP, 3 hidden layers of 100 units (Nam et al. 2020, Colored MNIST)."""
    return MLP(input_shape)
