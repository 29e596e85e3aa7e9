"""Shared backbones. A backbone maps images to penultimate features; heads live in methods.

Every backbone exposes ``forward_map(x)`` (the last convolutional feature map, for CAM-style
explanations) and ``forward(x)`` = global average pool of that map, plus ``feature_dim``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.registry import Registry


class Backbone(nn.Module):
    feature_dim: int

    def forward_map(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_map(x).mean(dim=(2, 3))


BackboneFactory = Callable[[tuple[int, ...]], Backbone]
BACKBONES: Registry[BackboneFactory] = Registry("backbone")
register_backbone = BACKBONES.register


def build_backbone(name: str, input_shape: tuple[int, ...]) -> Backbone:
    """Instantiate backbone ``name`` for inputs of shape (C, H, W)."""
    return BACKBONES.get(name)(input_shape)


def _conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class SmallCNN(Backbone):
    """Four 3×3 conv-BN-ReLU layers with two 2× poolings: a fast CPU backbone for 28–64 px."""

    def __init__(self, in_channels: int, width: int = 32) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv_bn(in_channels, width),
            nn.MaxPool2d(2),
            _conv_bn(width, 2 * width),
            nn.MaxPool2d(2),
            _conv_bn(2 * width, 4 * width),
            _conv_bn(4 * width, 4 * width),
        )
        self.feature_dim = 4 * width
        _kaiming_init(self)

    def forward_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class BasicBlockA(nn.Module):
    """CIFAR ResNet basic block with the parameter-free option-A shortcut (He et al. 2016)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.stride, self.pad = stride, cout - cin

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1 and self.pad == 0:
            return x
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(Backbone):
    """ResNet-(6n+2) for 32×32 inputs: 3 stages of 16/32/64 channels (He et al. 2016, §4.2)."""

    def __init__(self, in_channels: int, blocks_per_stage: int = 5) -> None:
        super().__init__()
        self.stem = _conv_bn(in_channels, 16)
        layers: list[nn.Module] = []
        cin = 16
        for i, cout in enumerate((16, 32, 64)):
            for b in range(blocks_per_stage):
                layers.append(BasicBlockA(cin, cout, 2 if (b == 0 and i > 0) else 1))
                cin = cout
        self.stages = nn.Sequential(*layers)
        self.feature_dim = 64
        _kaiming_init(self)

    def forward_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))


def _kaiming_init(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


@register_backbone("small-cnn")
def small_cnn(input_shape: tuple[int, ...]) -> Backbone:
    return SmallCNN(input_shape[0], width=32)


@register_backbone("tiny-cnn")
def tiny_cnn(input_shape: tuple[int, ...]) -> Backbone:
    """The smallest backbone (width 8): smoke tests and quick CPU experiments."""
    return SmallCNN(input_shape[0], width=8)


@register_backbone("resnet32")
def resnet32(input_shape: tuple[int, ...]) -> Backbone:
    return CifarResNet(input_shape[0], blocks_per_stage=5)


class BBNResNet32(Backbone):
    """BBN's CIFAR ResNet-32, as the TDE paper uses it (Zhou et al. 2020; Tang et al. 2020 §5).

    Stem conv 3×3 (16) + BN + ReLU; stages of 16/32/64 channels with 5/5/4 option-A basic
    blocks; then two parallel basic blocks on the stage-3 map (BBN's "conventional" and
    "re-balancing" branches) whose outputs are concatenated: 128 channels, 128-d features.
    Kaiming-normal (fan-in) init of every conv, as the official ``_weights_init``.
    """

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.stem = _conv_bn(in_channels, 16)
        layers: list[nn.Module] = []
        cin = 16
        for i, (cout, n) in enumerate(((16, 5), (32, 5), (64, 4))):
            for b in range(n):
                layers.append(BasicBlockA(cin, cout, 2 if (b == 0 and i > 0) else 1))
                cin = cout
        self.stages = nn.Sequential(*layers)
        self.cb_block = BasicBlockA(64, 64, 1)
        self.rb_block = BasicBlockA(64, 64, 1)
        self.feature_dim = 128
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)

    def forward_map(self, x: torch.Tensor) -> torch.Tensor:
        out = self.stages(self.stem(x))
        return torch.cat([self.cb_block(out), self.rb_block(out)], dim=1)


class TorchvisionResNet(Backbone):
    """A torchvision ResNet/ResNeXt without its ``fc``: ``forward_map`` is ``layer4``'s output."""

    def __init__(self, net: nn.Module, in_channels: int) -> None:
        super().__init__()
        if in_channels != 3:  # gray inputs: the same stem with the right number of channels
            old = net.conv1
            net.conv1 = nn.Conv2d(in_channels, old.out_channels, 7, 2, 3, bias=False)
            nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.feature_dim = net.fc.in_features
        net.fc = nn.Identity()
        self.net = net

    def forward_map(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        return n.layer4(n.layer3(n.layer2(n.layer1(x))))


@register_backbone("resnet32-bbn")
def resnet32_bbn(input_shape: tuple[int, ...]) -> Backbone:
    return BBNResNet32(input_shape[0])


@register_backbone("resnext50-32x4d")
def resnext50_32x4d(input_shape: tuple[int, ...]) -> Backbone:
    """ResNeXt-50 32×4d (Xie et al. 2017), torchvision's architecture, random init, 2048-d."""
    from torchvision.models import resnext50_32x4d as tv_resnext50

    return TorchvisionResNet(tv_resnext50(weights=None), input_shape[0])
