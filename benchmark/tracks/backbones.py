"""Backbones the bias, OoD and explanation tracks add to the shared registry.

A track module, not the core: it hashes with every plugin that imports it. ``erm`` (the
baseline of every track) and each track module import it, so a record of any run on one of
these backbones changes key when this file changes. Register with
``@register_backbone("name")`` on a factory ``(C, H, W) -> Backbone`` (see
``benchmark.backbones``: ``forward_map`` gives the last feature map, ``forward`` its global
average pool, ``feature_dim`` the width).
"""

from __future__ import annotations

import torch

from benchmark.backbones import Backbone, register_backbone


# -- OoD track (issue 13) ----------------------------------------------------------------------
def _resnet18_cifar(input_shape: tuple[int, ...]) -> Backbone:
    """ResNet-18 with a 3×3 stem for 32×32 inputs: torchvision's ResNet-18 (He et al. 2016)
    with ``conv1`` a 3×3 stride-1 convolution and no max-pool, 512-d features (the network
    of DUQ's and OpenOOD's CIFAR-10 experiments, Gram's ``ResNet_Cifar10`` analogue)."""
    from torch import nn
    from torchvision.models import resnet18

    from benchmark.backbones import TorchvisionResNet

    net = TorchvisionResNet(resnet18(weights=None), 3)
    net.net.conv1 = nn.Conv2d(input_shape[0], 64, 3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(net.net.conv1.weight, mode="fan_out", nonlinearity="relu")
    net.net.maxpool = nn.Identity()
    return net


register_backbone("resnet18-cifar")(_resnet18_cifar)


class DUQCNN(Backbone):
    """DUQ's Fashion-MNIST network (van Amersfoort et al., ICML 2020; ``utils/cnn_duq.py``):
    three 3×3 conv-BN-ReLU-max-pool blocks of 64, 128, 128 channels (the third unpadded),
    28 → 14 → 7 → 2, then FC(512 → 256) + ReLU: 256-d features. To keep the backbone contract
    (``forward`` = average pool of ``forward_map``), ``forward_map`` is those features as a
    256 × 1 × 1 map (no spatial map for CAM-style explanations)."""

    def __init__(self, in_channels: int, side: int) -> None:
        from torch import nn

        super().__init__()

        def block(cin: int, cout: int, pad: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=pad), nn.BatchNorm2d(cout), nn.ReLU(),
                nn.MaxPool2d(2),
            )  # fmt: skip

        self.convs = nn.Sequential(block(in_channels, 64, 1), block(64, 128, 1), block(128, 128, 0))
        out = ((side // 2) // 2 - 2) // 2
        self.fc = nn.Linear(128 * out * out, 256)
        self.feature_dim = 256

    def forward_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.convs(x).flatten(1)).relu()[:, :, None, None]


@register_backbone("duq-cnn")
def duq_cnn(input_shape: tuple[int, ...]) -> Backbone:
    return DUQCNN(input_shape[0], input_shape[-1])
