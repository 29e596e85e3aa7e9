"""Core backbones: output shapes, feature dimensions, parameter counts."""

from __future__ import annotations

import pytest
import torch

from benchmark.backbones import BACKBONES, build_backbone


@pytest.mark.parametrize("name", BACKBONES.names())
def test_backbone_shapes(name: str) -> None:
    net = build_backbone(name, (3, 32, 32)).eval()
    x = torch.randn(2, 3, 32, 32)
    fmap = net.forward_map(x)
    feats = net(x)
    assert fmap.ndim == 4 and fmap.shape[:2] == (2, net.feature_dim)
    assert feats.shape == (2, net.feature_dim)
    assert torch.allclose(feats, fmap.mean(dim=(2, 3)))


def test_resnet32_is_the_cifar_resnet() -> None:
    """He et al. 2016 §4.2: 6n+2 = 32 layers (n = 5), 16/32/64 channels, ~0.46 M parameters."""
    net = build_backbone("resnet32", (3, 32, 32))
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 31  # + the linear head = 32 weighted layers
    n_params = sum(p.numel() for p in net.parameters())
    assert 455_000 < n_params < 470_000
    assert net.forward_map(torch.zeros(1, 3, 32, 32)).shape == (1, 64, 8, 8)
