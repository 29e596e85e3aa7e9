"""OoD metrics against scikit-learn (ID positive, higher score = more in-distribution)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import auc, precision_recall_curve, roc_auc_score, roc_curve

from benchmark import metric_fn
from benchmark.errors import BenchError

ood = metric_fn("ood")


def reference(id_scores: np.ndarray, ood_scores: np.ndarray) -> dict[str, float]:
    y = np.r_[np.ones(len(id_scores)), np.zeros(len(ood_scores))]
    s = np.r_[id_scores, ood_scores].astype(np.float64)
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    fpr_o, tpr_o, _ = roc_curve(1 - y, -s, drop_intermediate=False)
    p_in, r_in, _ = precision_recall_curve(y, s)
    p_out, r_out, _ = precision_recall_curve(1 - y, -s)
    return {
        "auroc": roc_auc_score(y, s),
        "fpr95": fpr[np.argmax(tpr >= 0.95)],
        "fpr95_ood_positive": fpr_o[np.argmax(tpr_o >= 0.95)],
        "aupr_in": auc(r_in, p_in),
        "aupr_out": auc(r_out, p_out),
    }


def check(id_scores: np.ndarray, ood_scores: np.ndarray) -> dict[str, float]:
    got = ood(id_scores, ood_scores)
    expected = reference(id_scores, ood_scores)
    assert got == pytest.approx(expected, abs=1e-12)
    return got


@pytest.mark.parametrize("n_id,n_ood", [(1, 1), (3, 7), (20, 20), (500, 130), (4000, 9000)])
@pytest.mark.parametrize("seed", range(3))
def test_matches_sklearn(seed: int, n_id: int, n_ood: int) -> None:
    rng = np.random.RandomState(seed)
    id_scores, ood_scores = rng.randn(n_id) + 1.0, rng.randn(n_ood)
    check(id_scores, ood_scores)
    check(np.round(id_scores, 1), np.round(ood_scores, 1))  # many ties
    got = ood(torch.from_numpy(id_scores), torch.from_numpy(ood_scores))
    assert got == pytest.approx(reference(id_scores, ood_scores), abs=1e-12)


def test_ties_count_half_and_extremes() -> None:
    same = check(np.zeros(10), np.zeros(30))
    assert same["auroc"] == 0.5 and same["fpr95"] == 1.0
    perfect = check(np.arange(10.0) + 100, np.arange(30.0))
    assert perfect["auroc"] == 1.0 and perfect["fpr95"] == 0.0
    assert perfect["aupr_in"] == 1.0 and perfect["aupr_out"] == 1.0
    reversed_ = check(np.arange(10.0), np.arange(30.0) + 100)
    assert reversed_["auroc"] == 0.0 and reversed_["fpr95"] == 1.0
    check(np.array([1, 1, 2, 2, 3]), np.array([2, 2, 2, 0]))  # integer scores


def test_fpr95_uses_every_threshold() -> None:
    """Tie groups of one ID and one OoD sample lie on one line of the ROC curve: scikit-learn's
    default ``drop_intermediate=True`` (as in OpenOOD's evaluator) keeps only its ends and
    reports FPR 1.0; the threshold that keeps 95% of ID accepts 19 of 20 OoD samples."""
    scores = np.arange(20.0)
    assert ood(scores, scores)["fpr95"] == pytest.approx(0.95)
    y = np.r_[np.ones(20), np.zeros(20)]
    fpr, tpr, _ = roc_curve(y, np.r_[scores, scores])
    assert fpr[np.argmax(tpr >= 0.95)] == 1.0


def test_the_two_fpr95_conventions_differ() -> None:
    rng = np.random.RandomState(0)
    id_scores, ood_scores = rng.randn(1000) + 1.5, rng.randn(1000) * 2
    out = check(id_scores, ood_scores)
    accepted = (ood_scores >= np.sort(id_scores)[::-1][949]).mean()
    assert out["fpr95"] == pytest.approx(accepted)  # threshold keeping 950 of 1000 ID samples
    rejected = (id_scores <= np.sort(ood_scores)[949]).mean()
    assert out["fpr95_ood_positive"] == pytest.approx(rejected)
    assert abs(out["fpr95"] - out["fpr95_ood_positive"]) > 0.05


def test_bad_inputs_fail_loudly() -> None:
    with pytest.raises(BenchError, match="ood_scores is empty"):
        ood([0.1, 0.2], [])
    with pytest.raises(BenchError, match="id_scores is empty"):
        ood([], [0.3])
    with pytest.raises(BenchError, match="NaN"):
        ood([0.1, float("nan")], [0.3])
    with pytest.raises(BenchError, match="infinite"):
        ood([0.1], [float("inf")])
    with pytest.raises(BenchError, match="one score per sample"):
        ood(np.zeros((3, 2)), [0.3])


def test_readme_example() -> None:
    from conftest import REPO

    out = ood(id_scores=[0.9, 0.8, 0.7, 0.4], ood_scores=[0.5, 0.3, 0.2])
    shown = str({k: round(v, 3) for k, v in out.items()})
    assert shown in (REPO / "README.md").read_text()
    assert out["auroc"] == pytest.approx(11 / 12)  # 11 of the 12 (ID, OoD) pairs are ordered
    assert metric_fn("ece")([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7]], labels=[0, 1, 1]) == (
        pytest.approx(1 / 3)
    )
