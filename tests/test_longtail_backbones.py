"""The long-tail backbones: output shapes, feature dimensions, architecture facts."""

from __future__ import annotations

import torch

from benchmark.backbones import BasicBlockA, build_backbone


def test_resnet32_bbn_shapes_and_structure() -> None:
    net = build_backbone("resnet32-bbn", (3, 32, 32))
    x = torch.randn(2, 3, 32, 32)
    assert net.feature_dim == 128
    assert net.forward_map(x).shape == (2, 128, 8, 8)
    assert net(x).shape == (2, 128)
    blocks = [m for m in net.modules() if isinstance(m, BasicBlockA)]
    assert len(blocks) == 5 + 5 + 4 + 2  # stages 5/5/4, then the two parallel BBN blocks
    widths = [b.conv2.out_channels for b in blocks]
    assert widths == [16] * 5 + [32] * 5 + [64] * 6
    assert not any(isinstance(m, torch.nn.Linear) for m in net.modules())
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 1 + 2 * 16 and all(c.bias is None for c in convs)
    assert net(torch.randn(2, 1, 28, 28).repeat(1, 3, 1, 1)).shape == (2, 128)  # any size


def test_resnext50_32x4d_shapes() -> None:
    net = build_backbone("resnext50-32x4d", (1, 32, 32)).eval()  # one build: ~23M parameters
    assert net.feature_dim == 2048
    assert net.net.conv1.in_channels == 1  # gray inputs get a matching stem
    first = net.net.layer1[0].conv2
    assert first.groups == 32 and first.out_channels == 128  # 32 groups × 4 channels
    with torch.no_grad():
        assert net.forward_map(torch.randn(1, 1, 32, 32)).shape == (1, 2048, 1, 1)
        assert net(torch.randn(2, 1, 32, 32)).shape == (2, 2048)
    assert 22_900_000 < sum(p.numel() for p in net.parameters()) < 23_000_000
