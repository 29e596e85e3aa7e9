"""ECE / MCE against torchmetrics' binning, adaptive ECE against a plain numpy loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import multiclass_calibration_error
from torchmetrics.functional.classification.calibration_error import _ce_compute

from benchmark import metric_fn
from benchmark.errors import BenchError

ece, mce, adaptive_ece = metric_fn("ece"), metric_fn("mce"), metric_fn("adaptive_ece")


def sample(seed: int, n: int, k: int, dtype: torch.dtype = torch.float64):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, k, (n,), generator=g)
    logits = torch.randn(n, k, generator=g, dtype=torch.float64) * 3
    logits[torch.arange(n), labels] += 1.5
    return logits.softmax(dim=1).to(dtype), labels


def torchmetrics_binning(probs: torch.Tensor, labels: torch.Tensor, norm: str, n_bins: int = 15):
    """torchmetrics' binning and reduction on float64 confidences (its public function casts
    confidences to float32 first)."""
    conf, pred = probs.max(dim=1)
    return float(_ce_compute(conf, (pred == labels).to(conf.dtype), n_bins, norm))


def adaptive_reference(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    conf, correct = probs.max(1), probs.argmax(1) == labels
    order = np.argsort(conf, kind="stable")
    total = 0.0
    for run in np.array_split(order, n_bins):
        if len(run):
            total += abs(correct[run].sum() - conf[run].sum())
    return total / len(conf)


@pytest.mark.parametrize("n,k", [(1, 2), (7, 3), (1000, 10), (20000, 100)])
@pytest.mark.parametrize("seed", range(3))
def test_matches_torchmetrics_binning(seed: int, n: int, k: int) -> None:
    probs, labels = sample(seed, n, k)
    for n_bins in (15, 4):
        assert ece(probs, labels, n_bins) == pytest.approx(
            torchmetrics_binning(probs, labels, "l1", n_bins), abs=1e-12
        )
        assert mce(probs, labels, n_bins) == pytest.approx(
            torchmetrics_binning(probs, labels, "max", n_bins), abs=1e-12
        )
    assert adaptive_ece(probs, labels) == pytest.approx(
        adaptive_reference(probs.numpy(), labels.numpy()), abs=1e-12
    )


@pytest.mark.parametrize("seed", range(3))
def test_float32_path_matches_the_public_torchmetrics_function(seed: int) -> None:
    probs, labels = sample(seed, 50_000, 10, torch.float32)
    for norm, fn in (("l1", ece), ("max", mce)):
        expected = float(multiclass_calibration_error(probs, labels, 10, n_bins=15, norm=norm))
        assert fn(probs, labels) == pytest.approx(expected, abs=1e-4)


def test_adversarial_confidences() -> None:
    """Confidences exactly on bin edges, exactly 1.0 (its own bin in torchmetrics), ties."""
    edges = torch.linspace(0, 1, 16, dtype=torch.float32)
    top = torch.cat([edges[8:], torch.ones(5)])  # 8/15 ... 1.0, plus extra 1.0s
    probs = torch.stack([top, 1 - top], dim=1)
    labels = torch.tensor([0, 1] * 6 + [0])
    for norm, fn in (("l1", ece), ("max", mce)):
        expected = float(multiclass_calibration_error(probs, labels, 2, n_bins=15, norm=norm))
        assert fn(probs, labels) == pytest.approx(expected, abs=1e-7)
    bins = metric_fn("reliability_bins")(probs, labels)
    assert bins["count"][-1] == 6  # the five 1.0s and edges[15] = 1.0
    assert int(bins["count"].sum()) == len(labels)
    # all-uniform predictions: every confidence 1/k, one bin
    uniform = torch.full((10, 4), 0.25, dtype=torch.float64)
    labels = torch.arange(10) % 4
    assert ece(uniform, labels) == pytest.approx(torchmetrics_binning(uniform, labels, "l1"))
    assert adaptive_ece(uniform, labels) == pytest.approx(
        adaptive_reference(uniform.numpy(), labels.numpy())
    )


def test_fewer_samples_than_bins_and_perfect_calibration() -> None:
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], dtype=torch.float64)
    labels = torch.tensor([0, 1, 1])
    assert adaptive_ece(probs, labels) == pytest.approx(
        adaptive_reference(probs.numpy(), labels.numpy())
    )
    one_hot = torch.eye(3, dtype=torch.float64)
    assert ece(one_hot, torch.arange(3)) == 0.0 == mce(one_hot, torch.arange(3))


def test_reliability_table_reproduces_ece() -> None:
    probs, labels = sample(4, 3000, 5)
    b = metric_fn("reliability_bins")(probs, labels)
    assert len(b["count"]) == 16 and int(b["count"].sum()) == 3000
    weights = b["count"] / b["count"].sum()
    assert float((weights * (b["accuracy"] - b["confidence"]).abs()).sum()) == pytest.approx(
        ece(probs, labels), abs=1e-12
    )


def test_numpy_inputs_and_bad_inputs() -> None:
    probs, labels = sample(0, 20, 3)
    assert ece(probs.numpy(), labels.numpy()) == ece(probs, labels)
    with pytest.raises(BenchError, match="not logits"):
        ece(torch.randn(20, 3), labels)
    with pytest.raises(BenchError, match="sum to 1"):
        ece(probs * 0.9, labels)
    nan = probs.clone()
    nan[2, 1] = float("nan")
    with pytest.raises(BenchError, match="NaN"):
        mce(nan, labels)
    with pytest.raises(BenchError, match=r"\[0, 3\)"):
        adaptive_ece(probs, labels + 3)
    with pytest.raises(BenchError, match="n_bins"):
        ece(probs, labels, n_bins=0)
    with pytest.raises(BenchError, match=r"\(N, C\)"):
        ece(probs[:, 0], labels)
    with pytest.raises(BenchError, match="differ in length"):
        ece(probs, labels[:5])
    with pytest.raises(BenchError, match="empty"):
        ece(probs[:0], labels[:0])
