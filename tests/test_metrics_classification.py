"""Classification metrics against scikit-learn and hand-computed cases."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score

from benchmark import metric_fn
from benchmark.errors import BenchError
from benchmark.metric import UndefinedMetricWarning


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("n,k", [(1, 2), (10, 3), (1000, 10), (5000, 100)])
def test_accuracy_and_bacc_match_sklearn(seed: int, n: int, k: int) -> None:
    rng = np.random.RandomState(seed)
    labels = rng.randint(0, k, n)
    preds = np.where(rng.rand(n) < 0.6, labels, rng.randint(0, k, n))
    assert metric_fn("accuracy")(preds, labels) == pytest.approx(
        accuracy_score(labels, preds), abs=1e-12
    )
    with np.errstate(all="ignore"):
        ref = balanced_accuracy_score(labels, preds)
    got = metric_fn("balanced_accuracy")(torch.from_numpy(preds), torch.from_numpy(labels))
    assert got == pytest.approx(ref, abs=1e-12)


def test_bacc_adversarial_cases() -> None:
    bacc = metric_fn("balanced_accuracy")
    # a class that appears only in the predictions is ignored; a never-predicted class scores 0
    labels, preds = np.array([0, 0, 1, 1]), np.array([0, 5, 5, 5])
    with pytest.warns(UserWarning):
        ref = balanced_accuracy_score(labels, preds)
    assert bacc(preds, labels) == pytest.approx(ref) == pytest.approx(0.25)
    # absent middle class, scores instead of indices
    scores = torch.tensor([[0.9, 0.0, 0.1], [0.1, 0.0, 0.9], [0.0, 0.2, 0.8]])
    assert bacc(scores, [0, 2, 2]) == pytest.approx(1.0)
    assert bacc([1, 1, 1], [1, 1, 1]) == 1.0


def test_functional_api_rejects_bad_input() -> None:
    acc = metric_fn("accuracy")
    with pytest.raises(BenchError, match="differ in length"):
        acc([0, 1], [0])
    with pytest.raises(BenchError, match="empty"):
        acc([], [])
    with pytest.raises(BenchError, match="NaN"):
        acc(np.array([[0.1, np.nan]]), [0])
    with pytest.raises(BenchError, match="integer class indices"):
        acc(np.array([0.5]), [0])


def test_shot_accuracy_hand_computed() -> None:
    shot = metric_fn("shot_accuracy")
    train_counts = [500, 101, 100, 20, 19, 1]  # many, many, medium, medium, few, few
    labels = [0, 0, 1, 2, 2, 3, 4, 5, 5, 5]
    preds = [0, 1, 1, 2, 0, 0, 4, 5, 0, 0]
    out = shot(preds, labels, train_counts)
    # per class: 0.5, 1.0, 0.5, 0.0, 1.0, 1/3
    assert out["many"] == pytest.approx((0.5 + 1.0) / 2)
    assert out["medium"] == pytest.approx((0.5 + 0.0) / 2)
    assert out["few"] == pytest.approx((1.0 + 1 / 3) / 2)


def test_shot_accuracy_empty_group_is_nan_and_absent_classes_are_skipped() -> None:
    with pytest.warns(UndefinedMetricWarning, match="medium is undefined"):
        out = metric_fn("shot_accuracy")([0, 1, 1], [0, 1, 1], [500, 5, 50])
    assert out["many"] == 1.0 and out["few"] == 1.0
    assert math.isnan(out["medium"])  # class 2 is medium but has no test sample
    with pytest.raises(BenchError, match="one train count per class"):
        metric_fn("shot_accuracy")([0], [3], [1, 2])


def test_worst_group_accuracy() -> None:
    out = metric_fn("worst_group_accuracy")(
        preds=[0, 0, 1, 1, 1, 0], labels=[0, 0, 1, 1, 0, 1], groups=[3, 3, 7, 7, 9, 9]
    )
    assert out["worst"] == 0.0 and out["worst_group"] == 9
    assert out["per_group"] == {3: 1.0, 7: 1.0, 9: 0.0}
    assert out["counts"] == {3: 2, 7: 2, 9: 2}


def test_aligned_conflicting() -> None:
    out = metric_fn("aligned_conflicting_accuracy")(
        [0, 1, 1, 0], [0, 1, 0, 0], [True, True, False, False]
    )
    assert out == {"aligned": 1.0, "conflicting": 0.5}
    with pytest.warns(UndefinedMetricWarning, match="conflicting is undefined"):
        only = metric_fn("aligned_conflicting_accuracy")([0], [0], [True])
    assert math.isnan(only["conflicting"])


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("n,k,g", [(5, 2, 3), (500, 10, 7), (5000, 100, 40)])
def test_group_and_shot_metrics_match_plain_loops(seed: int, n: int, k: int, g: int) -> None:
    import pandas as pd

    rng = np.random.RandomState(seed)
    labels = rng.randint(0, k, n)
    preds = np.where(rng.rand(n) < 0.6, labels, rng.randint(0, k, n))
    groups = rng.randint(0, g, n) * 3  # sparse ids; some groups may be absent
    hit = pd.Series(preds == labels)
    per_group = hit.groupby(groups).mean()
    out = metric_fn("worst_group_accuracy")(preds, labels, groups)
    assert out["per_group"] == pytest.approx(per_group.to_dict(), abs=1e-12)
    assert out["worst"] == pytest.approx(per_group.min(), abs=1e-12)
    assert out["per_group"][out["worst_group"]] == out["worst"]

    counts = rng.randint(1, 300, k)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        shot = metric_fn("shot_accuracy")(preds, labels, counts)
    per_class = hit.groupby(labels).mean()  # only classes present in the labels
    for name, keep in (("many", counts > 100), ("medium", (counts >= 20) & (counts <= 100)),
                       ("few", counts < 20)):  # fmt: skip
        sel = [per_class[c] for c in np.flatnonzero(keep) if c in per_class.index]
        expected = np.mean(sel) if sel else float("nan")
        assert shot[name] == pytest.approx(expected, abs=1e-12, nan_ok=True)
        warned = any(str(w.message).startswith(f"{name} is undefined") for w in caught)
        assert warned == (not sel)  # a NaN comes with its reason, and only a NaN

    aligned = rng.rand(n) < 0.7
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        ac = metric_fn("aligned_conflicting_accuracy")(preds, labels, aligned)
    assert ac["aligned"] == pytest.approx(hit[aligned].mean(), abs=1e-12)
    assert ac["conflicting"] == pytest.approx(hit[~aligned].mean(), abs=1e-12, nan_ok=True)


def test_group_metrics_reject_bad_input() -> None:
    with pytest.raises(BenchError, match="differ in length"):
        metric_fn("worst_group_accuracy")([0, 1], [0, 1], [0])
    with pytest.raises(BenchError, match="NaN"):
        metric_fn("shot_accuracy")([0, 1], [0, 1], np.array([np.nan, 5.0]))
    with pytest.raises(BenchError, match="non-negative"):
        metric_fn("balanced_accuracy")([0, 1], [0, -1])
