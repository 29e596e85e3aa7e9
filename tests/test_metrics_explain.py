"""Explanation metrics: mIoU against per-image numpy loops, Insertion / Deletion against a
plain one-image, one-step loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter
from torch import nn

from benchmark import metric_fn
from benchmark.errors import BenchError
from benchmark.metric import UndefinedMetricWarning
from benchmark.plugins.metrics.insertion_deletion import blur, default_step, pixel_counts

miou, insertion_deletion = metric_fn("miou"), metric_fn("insertion_deletion")

# -- mIoU ----------------------------------------------------------------------------------


def miou_thr_reference(saliency: np.ndarray, masks: np.ndarray) -> float:
    """ALA's compute_miou, one image at a time: mask > 127, min-max map > 0.5."""
    ious = []
    for s, m in zip(saliency.astype(np.float64), masks):
        gt = m > 127
        if not gt.any():
            continue
        span = s.max() - s.min()
        pred = (s - s.min()) / span > 0.5 if span > 0 else np.zeros_like(gt)
        ious.append((pred & gt).sum() / (pred | gt).sum())
    return float(np.mean(ious)) if ious else float("nan")


def miou_mean_reference(saliency: np.ndarray, masks: np.ndarray) -> float:
    """Chefer et al.'s test: foreground = map > its mean; 2-class IoU summed over images."""
    inter, union = np.zeros(2), np.zeros(2)
    for s, m in zip(saliency.astype(np.float64), masks):
        gt = m > 127
        if not gt.any():
            continue
        span = s.max() - s.min()
        s01 = (s - s.min()) / span if span > 0 else np.zeros_like(s)
        fg = s01 > s01.mean()
        for c, (p, t) in enumerate(((~fg, ~gt), (fg, gt))):
            inter[c] += (p & t).sum()
            union[c] += (p | t).sum()
    return float(np.mean(inter / union))


def maps(seed: int, n: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(seed)
    saliency = rng.rand(n, h, w).astype(np.float32)
    masks = (rng.rand(n, h, w) < rng.rand(n, 1, 1)).astype(np.uint8) * 255
    masks[0] = 0  # an empty mask
    saliency[1] = 0.3  # a constant map
    saliency[2, :2] = saliency[2].max()  # ties at the maximum
    return saliency, masks


@pytest.mark.parametrize("n,h,w", [(4, 5, 7), (30, 16, 16), (12, 33, 20)])
@pytest.mark.parametrize("seed", range(3))
def test_miou_matches_per_image_loops(seed: int, n: int, h: int, w: int) -> None:
    saliency, masks = maps(seed, n, h, w)
    assert miou(saliency, masks) == pytest.approx(miou_thr_reference(saliency, masks), abs=1e-12)
    assert miou(torch.from_numpy(saliency), torch.from_numpy(masks), recipe="mean") == (
        pytest.approx(miou_mean_reference(saliency, masks), abs=1e-12)
    )
    details = metric_fn("miou_details")(saliency, masks)
    empty = int((masks.reshape(n, -1).max(1) == 0).sum())
    assert empty >= 1 and details["n_empty_masks"] == empty and details["n_images"] == n - empty
    assert details["per_image"][0] == 0.0  # the constant map (image 1) has no foreground


def test_miou_normalises_then_resizes_the_map_to_the_mask() -> None:
    saliency, masks = maps(0, 6, 8, 8)
    big = np.kron(masks, np.ones((1, 4, 4), dtype=np.uint8))  # 32×32 masks
    s = torch.from_numpy(saliency).double()
    lo, hi = s.amin(dim=(1, 2), keepdim=True), s.amax(dim=(1, 2), keepdim=True)
    s01 = torch.where(hi > lo, (s - lo) / (hi - lo).clamp(min=1e-12), 0.0)
    up = F.interpolate(s01[:, None], size=(32, 32), mode="bilinear")[:, 0].numpy()
    expected = [
        ((u > 0.5) & (m > 127)).sum() / ((u > 0.5) | (m > 127)).sum()
        for u, m in zip(up, big)
        if m.any()
    ]
    assert miou(saliency, big) == pytest.approx(np.mean(expected), abs=1e-12)


def test_miou_edge_cases() -> None:
    masks = np.zeros((2, 4, 4), dtype=np.uint8)
    with pytest.warns(UndefinedMetricWarning, match="all 2 masks are empty"):
        assert math.isnan(miou(np.random.rand(2, 4, 4), masks))  # every mask empty
    masks[:, :2] = 255
    perfect = np.zeros((2, 4, 4))
    perfect[:, :2] = 1.0
    assert miou(perfect, masks) == 1.0 == miou(perfect, masks, recipe="mean")
    assert miou(perfect, masks == 255) == 1.0  # bool masks
    assert miou(perfect, (masks == 255).astype(np.float32)) == 1.0  # float masks
    half = np.full((1, 2, 2), 127, dtype=np.uint8)
    half[0, 0, 0] = 128
    assert miou(np.eye(2)[None] * [[1, 0], [0, 0]], half) == 1.0  # uint8 threshold 127.5
    with pytest.raises(BenchError, match="NaN"):
        miou(np.full((2, 4, 4), np.nan), masks)
    with pytest.raises(BenchError, match=r"\[0, 1\]"):
        miou(perfect, masks * 2.0)
    with pytest.raises(BenchError, match=r"thr0\.5"):
        miou(perfect, masks, recipe="thr05")
    with pytest.raises(BenchError, match="differ in length"):
        miou(perfect[:1], masks)


# -- Insertion / Deletion -------------------------------------------------------------------

MEAN = torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1)
STD = torch.tensor([0.2, 0.3, 0.25]).view(1, 3, 1, 1)


def normalise(x: torch.Tensor) -> torch.Tensor:
    return (x - MEAN) / STD


def small_model(seed: int = 0, k: int = 5) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(3),
        nn.Flatten(),
        nn.Linear(72, k),
    ).eval()


@torch.no_grad()
def loop_reference(model, images, saliency, labels, protocol: str, step: int):
    """One image, one step, one forward pass at a time; pixels set by explicit coordinates."""
    n, _, h, w = images.shape
    aucs: dict[str, list[float]] = {"insertion": [], "deletion": []}
    for i in range(n):
        x01 = images[i : i + 1].float() / 255
        flat = saliency[i].flatten().tolist()
        order = sorted(range(h * w), key=lambda p: (-flat[p], p))  # ties: lower index first
        n_steps = math.ceil(h * w / step)
        for mode in ("insertion", "deletion"):
            scores = []
            if protocol == "rise":  # start point + n_steps, substrates in normalised space
                xn = normalise(x01)
                target = int(model(xn).argmax())
                current = (blur(xn) if mode == "insertion" else xn).clone()
                final = xn if mode == "insertion" else torch.zeros_like(xn)
                for k in range(n_steps + 1):
                    scores.append(float(model(current).softmax(1)[0, target]))
                    for p in order[k * step : (k + 1) * step]:
                        current[0, :, p // w, p % w] = final[0, :, p // w, p % w]
            else:  # black pixels in [0, 1] space, ground-truth class, no start point
                target = int(labels[i])
                for k in range(1, n_steps + 1):
                    shown = torch.zeros(h, w)
                    for p in order[: min(k * step, h * w)]:
                        shown[p // w, p % w] = 1.0
                    keep = shown if mode == "insertion" else 1 - shown
                    scores.append(float(model(normalise(x01 * keep)).softmax(1)[0, target]))
            aucs[mode].append((sum(scores) - scores[0] / 2 - scores[-1] / 2) / (len(scores) - 1))
    return {m: float(np.mean(v)) for m, v in aucs.items()}


@pytest.mark.parametrize("protocol", ["rise", "id"])
@pytest.mark.parametrize("seed,n,h,w,step", [(0, 3, 8, 8, 5), (1, 2, 9, 12, 13), (2, 4, 6, 6, 1)])
def test_insertion_deletion_matches_the_loop(protocol, seed, n, h, w, step) -> None:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, h, w), dtype=torch.uint8, generator=g)
    saliency = torch.rand(n, h, w, generator=g)
    saliency[0, :2] = 0.5  # ties
    labels = torch.randint(0, 5, (n,), generator=g)
    model = small_model(seed)
    expected = loop_reference(model, images, saliency, labels, protocol, step)
    for batch_size in (7, 256):
        got = insertion_deletion(
            model, images, saliency, labels, protocol, normalise=normalise, step=step,
            batch_size=batch_size,
        )  # fmt: skip
        assert got["insertion"] == pytest.approx(expected["insertion"], abs=1e-5)
        assert got["deletion"] == pytest.approx(expected["deletion"], abs=1e-5)
        assert got["id_score"] == pytest.approx(got["insertion"] - got["deletion"], abs=1e-12)
    points = math.ceil(h * w / step) + (protocol == "rise")
    assert len(got["insertion_curve"]) == len(got["fraction"]) == points
    assert got["fraction"][-1] == 1.0


def test_curve_end_points() -> None:
    g = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8, generator=g)
    saliency = torch.rand(2, 8, 8, generator=g)
    model = small_model(1)
    from benchmark.plugins.metrics.insertion_deletion import curves

    @torch.no_grad()
    def probs_fn(x: torch.Tensor) -> torch.Tensor:
        return model(x).softmax(1)

    r = curves(probs_fn, images, saliency, None, "rise", normalise, step=10)
    xn = normalise(images.float() / 255)
    clean = probs_fn(xn)
    target = clean.argmax(1)
    picked = clean[torch.arange(2), target].double()
    assert torch.allclose(r["deletion"][:, 0], picked, atol=1e-6)  # unmodified start
    assert torch.allclose(r["insertion"][:, -1], picked, atol=1e-6)  # everything inserted
    zeros = probs_fn(torch.zeros_like(xn))[torch.arange(2), target].double()
    assert torch.allclose(r["deletion"][:, -1], zeros, atol=1e-6)  # everything deleted
    blurred = probs_fn(blur(xn))[torch.arange(2), target].double()
    assert torch.allclose(r["insertion"][:, 0], blurred, atol=1e-6)


def test_protocol_constants() -> None:
    assert default_step("rise", 224, 224) == 224 and default_step("id", 224, 224) == 500
    assert len(pixel_counts(224 * 224, 224, True)) == 225  # 224 steps + the start point
    assert len(pixel_counts(224 * 224, 500, False)) == 101  # no start point
    assert default_step("rise", 28, 28) == 4  # same number of steps at 28×28: 196 + 1 points
    delta = np.zeros((11, 11))
    delta[5, 5] = 1.0
    kernel = blur(torch.from_numpy(delta).float().view(1, 1, 11, 11))[0, 0]
    assert np.allclose(kernel.numpy(), gaussian_filter(delta, 5)[::-1, ::-1], atol=1e-7)


def test_low_resolution_saliency_is_upsampled() -> None:
    g = torch.Generator().manual_seed(5)
    images = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8, generator=g)
    small = torch.rand(2, 4, 4, generator=g)
    up = F.interpolate(small[:, None].double(), size=(8, 8), mode="bilinear")[:, 0]
    model = small_model(2)
    a = insertion_deletion(model, images, small, protocol="rise", normalise=normalise, step=6)
    b = insertion_deletion(model, images, up, protocol="rise", normalise=normalise, step=6)
    assert a["insertion"] == b["insertion"] and a["deletion"] == b["deletion"]


def test_insertion_deletion_bad_inputs_and_model_state() -> None:
    images = torch.randint(0, 256, (2, 3, 6, 6), dtype=torch.uint8)
    saliency = torch.rand(2, 6, 6)
    model = small_model().train()
    out = insertion_deletion(model, images, saliency, protocol="rise", step=4)
    assert model.training  # restored after the call
    assert 0 <= out["deletion"] <= 1 and 0 <= out["insertion"] <= 1
    with pytest.raises(BenchError, match="pass labels"):
        insertion_deletion(model, images, saliency, protocol="id", step=4)
    bad = saliency.clone()
    bad[1, 2, 2] = float("nan")
    with pytest.raises(BenchError, match="NaN"):
        insertion_deletion(model, images, bad, step=4)
    with pytest.raises(BenchError, match=r"\[0, 1\]"):
        insertion_deletion(model, images.float(), saliency, step=4)
    with pytest.raises(BenchError, match="rise"):
        insertion_deletion(model, images, saliency, protocol="RISE", step=4)
    with pytest.raises(BenchError, match="fewer than 2"):
        insertion_deletion(model, images, saliency, labels=[0, 1], protocol="id", step=36)
    with pytest.raises(BenchError, match="N = 2"):
        insertion_deletion(model, images, saliency[:1], step=4)
