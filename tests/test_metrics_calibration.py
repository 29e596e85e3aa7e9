"""ECE / MCE against Guo et al.'s binning (a numpy loop written from their eq. 3, the default)
and torchmetrics' (``binning="torchmetrics"``), adaptive ECE against a plain numpy loop."""

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


def guo_reference(
    probs: np.ndarray, labels: np.ndarray, n_bins: int = 15, dtype: torch.dtype | None = None
) -> tuple[float, float]:
    """(ECE, MCE) with Guo et al.'s bins I_m = ((m - 1)/M, m/M] (eq. 3), one bin at a time as in
    their reference code; 0 goes to the first bin. ``dtype``: round the edges m/M to it (the
    precision the probabilities were written in)."""
    conf, correct = probs.max(1), probs.argmax(1) == labels

    def edge(m: int) -> float:
        return m / n_bins if dtype is None else float(torch.tensor(m / n_bins).to(dtype))

    ece_sum, worst = 0.0, 0.0
    for m in range(1, n_bins + 1):
        lo, hi = edge(m - 1), edge(m)
        in_bin = ((conf > lo) | ((m == 1) & (conf == 0))) & (conf <= hi)
        if in_bin.any():
            gap = abs(correct[in_bin].mean() - conf[in_bin].mean())
            ece_sum += in_bin.mean() * gap
            worst = max(worst, gap)
    return float(ece_sum), float(worst)


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
def test_matches_guo_and_torchmetrics_binning(seed: int, n: int, k: int) -> None:
    probs, labels = sample(seed, n, k)
    for n_bins in (15, 4):
        ref_ece, ref_mce = guo_reference(probs.numpy(), labels.numpy(), n_bins)
        assert ece(probs, labels, n_bins) == pytest.approx(ref_ece, abs=1e-12)
        assert mce(probs, labels, n_bins) == pytest.approx(ref_mce, abs=1e-12)
        tm = {"binning": "torchmetrics"}
        assert ece(probs, labels, n_bins, **tm) == pytest.approx(
            torchmetrics_binning(probs, labels, "l1", n_bins), abs=1e-12
        )
        assert mce(probs, labels, n_bins, **tm) == pytest.approx(
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
        assert fn(probs, labels, binning="torchmetrics") == pytest.approx(expected, abs=1e-4)


def test_adversarial_confidences() -> None:
    """Confidences exactly on bin edges, exactly 1.0 (its own bin in torchmetrics, the last
    bin in Guo's), ties."""
    edges = torch.linspace(0, 1, 16, dtype=torch.float32)
    top = torch.cat([edges[8:], torch.ones(5)])  # 8/15 ... 1.0, plus extra 1.0s
    probs = torch.stack([top, 1 - top], dim=1)
    labels = torch.tensor([0, 1] * 6 + [0])
    for norm, fn in (("l1", ece), ("max", mce)):
        expected = float(multiclass_calibration_error(probs, labels, 2, n_bins=15, norm=norm))
        assert fn(probs, labels, binning="torchmetrics") == pytest.approx(expected, abs=1e-7)
    bins = metric_fn("reliability_bins")(probs, labels, binning="torchmetrics")
    assert bins["count"][-1] == 6  # the five 1.0s and edges[15] = 1.0
    assert int(bins["count"].sum()) == len(labels)
    # Guo: each edge m/15 closes bin m, so 8/15 is in bin 8 and the 1.0s share bin 15 with
    # 14/15 < c <= 1; float64 edges are exactly the reference's m/15
    top64 = torch.cat([torch.arange(8, 16, dtype=torch.float64) / 15, torch.ones(5)])
    probs64 = torch.stack([top64, 1 - top64], dim=1)
    ref_ece, ref_mce = guo_reference(probs64.numpy(), labels.numpy())
    assert ece(probs64, labels) == pytest.approx(ref_ece, abs=1e-12)
    assert mce(probs64, labels) == pytest.approx(ref_mce, abs=1e-12)
    guo = metric_fn("reliability_bins")(probs, labels)
    assert guo["count"].tolist() == [0.0] * 7 + [1.0] * 7 + [6.0]  # float32 edges alike
    assert guo["hi"][7] == pytest.approx(8 / 15) and guo["lo"][0] == 0.0
    # all-uniform predictions: every confidence 1/k, one bin
    uniform = torch.full((10, 4), 0.25, dtype=torch.float64)
    labels = torch.arange(10) % 4
    assert ece(uniform, labels) == pytest.approx(guo_reference(uniform.numpy(), labels.numpy())[0])
    assert ece(uniform, labels, binning="torchmetrics") == pytest.approx(
        torchmetrics_binning(uniform, labels, "l1")
    )
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
    for binning, n_rows in (("guo", 15), ("torchmetrics", 16)):
        b = metric_fn("reliability_bins")(probs, labels, binning=binning)
        assert len(b["count"]) == n_rows and int(b["count"].sum()) == 3000
        weights = b["count"] / b["count"].sum()
        assert float((weights * (b["accuracy"] - b["confidence"]).abs()).sum()) == (
            pytest.approx(ece(probs, labels, binning=binning), abs=1e-12)
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
    with pytest.raises(BenchError, match="unknown ECE binning 'guo2017'"):
        ece(probs, labels, binning="guo2017")
    with pytest.raises(BenchError, match="C >= 2"):
        ece(torch.ones(3, 1, dtype=torch.float64), [0, 0, 0])


# -- the instances of issue 10 §4 --------------------------------------------------------------


def test_guo_binning_is_the_default_and_torchmetrics_is_named() -> None:
    """A confidence of exactly 1.0: Guo's last bin (0.475 / 0.475), not a bin of its own
    (torchmetrics: 0.525 / 1.0)."""
    probs, labels = [[0.95, 0.05], [1.0, 0.0]], [0, 1]
    assert ece(probs, labels) == pytest.approx(0.475, abs=1e-12)
    assert mce(probs, labels) == pytest.approx(0.475, abs=1e-12)
    assert guo_reference(np.array(probs), np.array(labels)) == pytest.approx((0.475, 0.475))
    assert ece(probs, labels, binning="torchmetrics") == pytest.approx(0.525, abs=1e-12)
    assert mce(probs, labels, binning="torchmetrics") == pytest.approx(1.0, abs=1e-12)
    t = torch.tensor(probs, dtype=torch.float32)
    assert float(multiclass_calibration_error(t, torch.tensor(labels), 2, norm="l1")) == (
        pytest.approx(0.525)
    )


BF16_LOGITS = [[0.8, 1.7, -1.4], [2.0, 0.5, 0.1], [0.3, 0.2, 2.2]]


def test_low_precision_probabilities_are_accepted_with_their_own_tolerance() -> None:
    probs = torch.softmax(torch.tensor(BF16_LOGITS), dim=1).bfloat16()
    # its rows miss 1 by 2.4e-3 even summed in float64: over float32's 1e-3, within bf16's
    assert float((probs.double().sum(1) - 1).abs().max()) == pytest.approx(2.44e-3, abs=1e-5)
    # hand-computed: confidences 0.6875, 0.7266 (bin (10/15, 11/15], both right) and 0.7773
    # (bin (11/15, 12/15], wrong)
    conf = probs.max(1).values.double().tolist()
    expected = (2 * abs(1 - (conf[0] + conf[1]) / 2) + abs(0 - conf[2])) / 3
    assert ece(probs, labels=[1, 0, 1]) == pytest.approx(expected, abs=1e-12)
    assert ece(probs, labels=[1, 0, 1]) == pytest.approx(0.4544, abs=1e-4)
    assert ece(probs.half(), labels=[1, 0, 1]) == pytest.approx(expected, abs=1e-12)
    # the same values declared float32 / float64 are held to 1e-3, and refused
    for dtype in (torch.float32, torch.float64):
        with pytest.raises(BenchError, match=r"within 0\.001"):
            ece(probs.to(dtype), labels=[1, 0, 1])
    # logits stay refused in every dtype
    for dtype in (torch.float16, torch.bfloat16):
        with pytest.raises(BenchError, match="not logits"):
            ece(torch.tensor(BF16_LOGITS).abs().to(dtype), labels=[1, 0, 1])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("k", [2, 10, 1000])
def test_softmax_in_every_dtype_passes_the_probability_check(dtype: torch.dtype, k: int) -> None:
    """Rows rounded to the dtype, softmax taken in float32 or in the dtype itself."""
    g = torch.Generator().manual_seed(k)
    logits = torch.randn(4000, k, generator=g) * 4
    labels = torch.randint(0, k, (4000,), generator=g)
    for probs in (logits.softmax(1).to(dtype), logits.to(dtype).softmax(1)):
        wide = probs.double().numpy()  # exact copy of the low-precision values
        ref_ece, ref_mce = guo_reference(wide, labels.numpy(), dtype=dtype)
        assert ece(probs, labels) == pytest.approx(ref_ece, abs=1e-12)
        assert mce(probs, labels) == pytest.approx(ref_mce, abs=1e-12)
        assert adaptive_ece(probs, labels) == pytest.approx(
            adaptive_reference(wide, labels.numpy()), abs=1e-12
        )


def test_labels_as_an_integer_column() -> None:
    probs, labels = sample(1, 50, 4)
    for fn in (ece, mce, adaptive_ece):
        assert fn(probs, labels[:, None]) == fn(probs, labels)
        assert fn(probs, labels.numpy()[:, None]) == fn(probs, labels)
        with pytest.raises(BenchError, match=r"float \(N, 1\) column"):
            fn(probs, labels[:, None].double())
