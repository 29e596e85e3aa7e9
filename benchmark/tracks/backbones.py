"""Backbones the bias, OoD and explanation tracks add to the shared registry.

A track module, not the core: it hashes with every plugin that imports it. ``erm`` (the
baseline of every track) and each track module import it, so a record of any run on one of
these backbones changes key when this file changes. Register with
``@register_backbone("name")`` on a factory ``(C, H, W) -> Backbone`` (see
``benchmark.backbones``: ``forward_map`` gives the last feature map, ``forward`` its global
average pool, ``feature_dim`` the width).
"""

from __future__ import annotations

from benchmark.backbones import Backbone, register_backbone  # noqa: F401


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
