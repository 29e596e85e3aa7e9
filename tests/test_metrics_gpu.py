"""Every functional metric gives the CPU's number when its inputs live on a CUDA GPU."""

from __future__ import annotations

import pytest
import torch

from benchmark import metric_fn

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="compares the CUDA path with the CPU path: needs a GPU"
)


def same(name: str, *args: torch.Tensor, tol: float = 1e-9, **kwargs) -> None:
    fn = metric_fn(name)
    cpu = fn(*args, **kwargs)
    gpu = fn(*(a.cuda() if isinstance(a, torch.Tensor) else a for a in args), **kwargs)
    if isinstance(cpu, dict):
        for key, value in cpu.items():
            if isinstance(value, float):
                assert gpu[key] == pytest.approx(value, abs=tol), (name, key)
    else:
        assert gpu == pytest.approx(cpu, abs=tol), name


def test_cuda_matches_cpu() -> None:
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (5000,), generator=g)
    probs = torch.randn(5000, 10, generator=g, dtype=torch.float64).softmax(1)
    preds = probs.argmax(1)
    same("accuracy", preds, labels)
    same("balanced_accuracy", preds, labels)
    same("shot_accuracy", preds, labels, torch.tensor([500, 300, 120, 100, 50, 20, 19, 5, 2, 1]))
    same("worst_group_accuracy", preds, labels, labels % 3)
    for name in ("ece", "mce", "adaptive_ece"):
        same(name, probs, labels)
    same("ece", probs.float(), labels, tol=1e-6)
    same("ood", torch.randn(3000, generator=g) + 1, torch.randn(2000, generator=g))
    x = torch.randn(700, 64, generator=g)
    y = x[:, :1] ** 2 + torch.randn(700, 1, generator=g)
    same("dcor2", x, y)
    same("dcor2", x, y, unbiased=True)
    same("miou", torch.rand(20, 16, 16, generator=g), torch.rand(20, 16, 16, generator=g) > 0.6)


def test_cuda_input_conventions_match_cpu() -> None:
    """Integer columns, low-precision probabilities, uint8 0/1 and 0/255 masks, both binnings."""
    g = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 10, (5000,), generator=g)
    probs = (torch.randn(5000, 10, generator=g) * 3).softmax(1)
    same("accuracy", probs.argmax(1)[:, None], labels[:, None])
    same("worst_group_accuracy", probs, labels[:, None], (labels % 3)[:, None])
    for dtype in (torch.bfloat16, torch.float16):
        for binning in ("guo", "torchmetrics"):
            same("ece", probs.to(dtype), labels, binning=binning)
            same("mce", probs.to(dtype), labels, binning=binning)
    masks = (torch.rand(20, 16, 16, generator=g) > 0.6).to(torch.uint8)
    masks[10:] *= 255
    saliency = torch.rand(20, 16, 16, generator=g)
    same("miou", saliency, masks)
    assert metric_fn("miou")(saliency.cuda(), masks.cuda()) == pytest.approx(
        metric_fn("miou")(saliency, masks.bool())
    )


def test_insertion_deletion_cuda_matches_cpu() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(32, 4),
    ).eval()
    images = torch.randint(0, 256, (3, 3, 12, 12), dtype=torch.uint8)
    saliency = torch.rand(3, 12, 12)
    fn = metric_fn("insertion_deletion")
    for protocol in ("rise", "id"):
        cpu = fn(model, images, saliency, [0, 1, 2], protocol, step=5)
        gpu = fn(model.cuda(), images.cuda(), saliency.cuda(), [0, 1, 2], protocol, step=5)
        model.cpu()
        for key in ("insertion", "deletion", "id_score"):
            assert gpu[key] == pytest.approx(cpu[key], abs=1e-4), (protocol, key)
