"""dcor² against the ``dcor`` package (small n: its n×n×d fallback needs 13 GB at n = 5,000)
and against a plain scipy ``cdist`` double-centring formula at larger n."""

from __future__ import annotations

import math
import warnings

import dcor
import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from benchmark import metric_fn
from benchmark.errors import BenchError
from benchmark.metric import UndefinedMetricWarning
from benchmark.plugins.metrics import dcor as plugin

dcor2 = metric_fn("dcor2")


def reference(x: np.ndarray, y: np.ndarray, unbiased: bool) -> float:
    """Székely et al. 2007 (double centring) / Székely & Rizzo 2014 (U-centring), verbatim."""
    x, y = x.reshape(len(x), -1), y.reshape(len(y), -1)
    n = len(x)

    def centred(d: np.ndarray) -> np.ndarray:
        if not unbiased:
            return d - d.mean(0) - d.mean(1)[:, None] + d.mean()
        u = d - d.sum(0) / (n - 2) - d.sum(1)[:, None] / (n - 2) + d.sum() / ((n - 1) * (n - 2))
        np.fill_diagonal(u, 0.0)
        return u

    a, b = centred(cdist(x, x)), centred(cdist(y, y))
    scale = n * (n - 3) if unbiased else n * n
    xy, xx, yy = ((p * q).sum() / scale for p, q in ((a, b), (a, a), (b, b)))
    denominator = math.sqrt(abs(xx * yy))
    return 0.0 if denominator == 0 else xy / denominator


def dcor_package(x: np.ndarray, y: np.ndarray, unbiased: bool) -> float:
    fn = dcor.u_distance_correlation_sqr if unbiased else dcor.distance_correlation_sqr
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(fn(x, y))


def sample(seed: int, n: int, p: int, q: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(seed)
    x = rng.randn(n, p)
    y = np.tanh(x[:, :q]) + 0.5 * rng.randn(n, q)
    return x, y


@pytest.mark.parametrize("unbiased", [False, True])
@pytest.mark.parametrize("n,p,q", [(4, 1, 1), (9, 3, 1), (60, 16, 2), (150, 64, 1)])
@pytest.mark.parametrize("seed", range(3))
def test_matches_the_dcor_package(seed: int, n: int, p: int, q: int, unbiased: bool) -> None:
    x, y = sample(seed, n, p, q)
    expected = dcor_package(x, y, unbiased)
    assert dcor2(x, y, unbiased=unbiased) == pytest.approx(expected, abs=1e-10)
    got = dcor2(torch.from_numpy(x).float(), torch.from_numpy(y).float(), unbiased=unbiased)
    assert got == pytest.approx(expected, abs=1e-5)  # float32 inputs, as features come


@pytest.mark.parametrize("unbiased", [False, True])
def test_matches_cdist_formula_at_larger_n(unbiased: bool) -> None:
    x, y = sample(7, 1500, 32, 1)
    assert dcor2(x, y, unbiased=unbiased) == pytest.approx(reference(x, y, unbiased), abs=1e-10)


def test_reference_formula_matches_the_package() -> None:
    """The test's own formula is the package's estimator (so the large-n check means it)."""
    for unbiased in (False, True):
        x, y = sample(3, 80, 5, 2)
        assert reference(x, y, unbiased) == pytest.approx(dcor_package(x, y, unbiased), abs=1e-12)


@pytest.mark.parametrize("block", [1, 7, 64])
def test_blocked_pass_equals_unblocked(block: int) -> None:
    x, y = sample(1, 67, 12, 3)
    for unbiased in (False, True):
        whole = dcor2(x, y, unbiased=unbiased, block_size=10_000)
        assert dcor2(x, y, unbiased=unbiased, block_size=block) == pytest.approx(whole, abs=1e-12)


def test_blocks_respect_the_memory_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """No block is larger than the budget: n×n (let alone n×n×d) is never materialised."""
    shapes: list[tuple[int, ...]] = []
    original = plugin._distances

    def spy(rows: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        out = original(rows, x)
        shapes.append(tuple(out.shape))
        return out

    monkeypatch.setattr(plugin, "_distances", spy)
    monkeypatch.setitem(plugin.BLOCK_ELEMENTS, "cpu", 2**12)
    x, y = sample(2, 400, 64, 1)
    assert dcor2(x, y, unbiased=True) == pytest.approx(reference(x, y, True), abs=1e-10)
    assert len(shapes) > 2 and max(r * c for r, c in shapes) <= 2**12


def test_dependence_extremes() -> None:
    x, _ = sample(0, 50, 4, 1)
    assert dcor2(x, x) == pytest.approx(1.0)
    assert dcor2(x, 3 * x + 1, unbiased=True) == pytest.approx(1.0)
    assert dcor2(x, x[:, 0] ** 2) > 0.1


def test_constant_inputs_give_zero() -> None:
    x, y = sample(0, 30, 3, 1)
    const = np.full((30, 1), 2.5)
    for unbiased in (False, True):
        assert dcor2(x, const, unbiased=unbiased) == 0.0
        assert dcor2(const, y, unbiased=unbiased) == 0.0
        assert dcor2(const, const, unbiased=unbiased) == 0.0
        assert dcor_package(x, const, unbiased) == 0.0  # the package agrees


def test_one_dimensional_inputs_are_columns() -> None:
    x, y = sample(4, 40, 1, 1)
    assert dcor2(x[:, 0], y[:, 0]) == pytest.approx(dcor2(x, y), abs=1e-14)


def test_bad_inputs_fail_loudly() -> None:
    x, y = sample(0, 10, 2, 1)
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(BenchError, match="NaN"):
        dcor2(bad, y)
    bad[3, 1] = np.inf
    with pytest.raises(BenchError, match="infinite"):
        dcor2(bad, y)
    with pytest.raises(BenchError, match="differ in length"):
        dcor2(x, y[:5])
    with pytest.raises(BenchError, match="more than 3"):
        dcor2(x[:3], y[:3], unbiased=True)
    with pytest.raises(BenchError, match="shape"):
        dcor2(np.zeros((4, 2, 2)), y[:4])


def test_per_class_is_the_mean_of_class_u_statistics() -> None:
    rng = np.random.RandomState(5)
    features = rng.randn(120, 8)
    labels = np.repeat([0, 1, 2, 3], [50, 40, 27, 3])
    confounder = features[:, 0] * (labels == 1) + rng.randn(120)
    out = metric_fn("dcor2_per_class")(features, confounder, labels)
    expected = {
        c: dcor_package(features[labels == c], confounder[labels == c, None], True)
        for c in (0, 1, 2)
    }
    assert out["per_class"] == pytest.approx(expected, abs=1e-10)  # class 3 has 3 samples
    assert out["counts"] == {0: 50, 1: 40, 2: 27, 3: 3}
    assert out["mean"] == pytest.approx(np.mean(list(expected.values())), abs=1e-10)
    with pytest.warns(UndefinedMetricWarning, match="4 samples"):
        few = metric_fn("dcor2_per_class")(features[:3], confounder[:3], [0, 0, 0])
    assert math.isnan(few["mean"]) and few["per_class"] == {}
