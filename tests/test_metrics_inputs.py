"""Metric inputs that mislead (issue 10 §4, conventions in specs/metrics.md "Input shapes"):
class indices as an (N, 1) column, low-precision probabilities, 0/1 masks stored as uint8, and
NaN results. Each kind is checked on every function that takes such an input, against the
reference (scikit-learn, a plain loop) or against the same call with the plain input."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score

from benchmark import metric_fn
from benchmark.errors import BenchError
from benchmark.metric import (
    UndefinedMetricWarning,
    as_labels,
    as_mask,
    probability_tolerance,
)

# -- class indices as an (N, 1) column ---------------------------------------------------------


def test_issue_instance_integer_column_is_indices() -> None:
    """It used to be arg-maxed (every row of a 1-column array has arg-max 0): 0.25."""
    assert metric_fn("accuracy")([[1], [0], [2], [2]], [1, 0, 2, 1]) == 0.75
    with pytest.raises(BenchError, match=r"float \(N, 1\) column, which is ambiguous"):
        metric_fn("accuracy")([[1.0], [0.0], [2.0], [2.0]], [1, 0, 2, 1])


def column_cases(seed: int, n: int = 300, k: int = 6) -> dict[str, tuple]:
    """Each function that takes class indices (or group ids), with plain (N,) arguments and
    the names of the arguments that hold indices."""
    rng = np.random.RandomState(seed)
    labels = rng.randint(0, k, n)
    preds = np.where(rng.rand(n) < 0.6, labels, rng.randint(0, k, n))
    logits = rng.randn(n, k)
    logits[np.arange(n), labels] += 1.0
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    groups = rng.randint(0, 4, n) * 5
    counts = np.array([500, 200, 60, 30, 10, 2])[:k]
    feats, conf = rng.randn(n, 3), rng.randn(n)
    return {
        "accuracy": ((preds, labels), (0, 1)),
        "balanced_accuracy": ((preds, labels), (0, 1)),
        "shot_accuracy": ((preds, labels, counts), (0, 1)),
        "worst_group_accuracy": ((preds, labels, groups), (0, 1, 2)),
        "aligned_conflicting_accuracy": ((preds, labels, rng.rand(n) < 0.5), (0, 1)),
        "ece": ((probs, labels), (1,)),
        "mce": ((probs, labels), (1,)),
        "adaptive_ece": ((probs, labels), (1,)),
        "reliability_bins": ((probs, labels), (1,)),
        "dcor2_per_class": ((feats, conf, labels), (2,)),
    }


def same(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    return a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))


@pytest.mark.parametrize("seed", range(2))
def test_every_index_argument_takes_an_integer_column_and_refuses_a_float_one(seed) -> None:
    for name, (args, index_args) in column_cases(seed).items():
        fn = metric_fn(name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            expected = fn(*args)
            for i in index_args:
                for column in (args[i][:, None], torch.from_numpy(args[i])[:, None]):
                    moved = list(args)
                    moved[i] = column
                    assert same(fn(*moved), expected), (name, i)
                moved = list(args)
                moved[i] = args[i][:, None].astype(np.float64)
                with pytest.raises(BenchError, match=r"float \(N, 1\) column"):
                    fn(*moved)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("n,k", [(1, 2), (40, 3), (2000, 50)])
def test_columns_and_scores_against_sklearn(seed: int, n: int, k: int) -> None:
    rng = np.random.RandomState(seed)
    labels = rng.randint(0, k, n)
    scores = rng.randn(n, k).astype(np.float32)
    scores[:, 1] = scores[:, 0]  # ties: the first maximum wins, as numpy's argmax
    bf16 = torch.from_numpy(scores).bfloat16()
    cases = ((scores.argmax(1)[:, None], scores), (scores, scores), (bf16, bf16.float().numpy()))
    for p, plain in cases:
        idx = plain.argmax(1)  # ties: the first maximum, as torch's argmax
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scikit-learn on classes seen on one side only
            acc, bacc = accuracy_score(labels, idx), balanced_accuracy_score(labels, idx)
        assert metric_fn("accuracy")(p, labels[:, None]) == pytest.approx(acc, abs=1e-12)
        assert metric_fn("balanced_accuracy")(p, labels[:, None]) == pytest.approx(bacc, abs=1e-12)


def test_index_arguments_refuse_scores_and_other_shapes() -> None:
    scores = np.eye(3)
    assert metric_fn("accuracy")(scores, [0, 1, 2]) == 1.0  # preds may be scores
    with pytest.raises(BenchError, match=r"labels must be class indices .* got shape \(3, 3\)"):
        metric_fn("accuracy")([0, 1, 2], scores)  # labels may not (one-hot is a guess)
    with pytest.raises(BenchError, match=r"groups must be group ids"):
        metric_fn("worst_group_accuracy")([0, 1, 2], [0, 1, 2], scores)
    with pytest.raises(BenchError, match=r"got shape \(3, 0\)"):
        metric_fn("accuracy")(np.zeros((3, 0)), [0, 1, 2])
    with pytest.raises(BenchError, match=r"got shape \(1, 3, 1\)"):
        metric_fn("accuracy")([[[0], [1], [2]]], [0, 1, 2])
    with pytest.raises(BenchError, match="integer image counts"):
        metric_fn("shot_accuracy")([0, 1], [0, 1], [10.5, 3])
    with pytest.raises(BenchError, match="non-negative"):
        metric_fn("shot_accuracy")([0, 1], [0, 1], [10, -3])
    assert as_labels(torch.tensor([[True], [False]])).tolist() == [1, 0]
    assert as_labels(np.array([2.0, 0.0])).dtype == torch.int64  # integer-valued floats (N,)


def test_ood_scores_as_a_column() -> None:
    ood = metric_fn("ood")
    id_s, ood_s = np.array([0.9, 0.8, 0.7, 0.4]), np.array([0.5, 0.3, 0.2])
    assert ood(id_s[:, None], ood_s[:, None]) == ood(id_s, ood_s)
    with pytest.raises(BenchError, match=r"one score per sample"):
        ood(np.stack([id_s, id_s], 1), ood_s)


def test_insertion_deletion_labels_as_a_column() -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (3, 3, 6, 6), dtype=torch.uint8, generator=g)
    saliency = torch.rand(3, 6, 6, generator=g)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(108, 4)).eval()
    fn = metric_fn("insertion_deletion")
    labels = torch.tensor([0, 3, 1])
    plain = fn(model, images, saliency, labels, "id", step=9)
    assert fn(model, images, saliency, labels[:, None], "id", step=9) == plain
    with pytest.raises(BenchError, match=r"float \(N, 1\) column"):
        fn(model, images, saliency, labels[:, None].float(), "id", step=9)


# -- low-precision probabilities ---------------------------------------------------------------


def test_probability_tolerance_follows_the_dtype() -> None:
    assert probability_tolerance(torch.float64) == probability_tolerance(torch.float32) == 1e-3
    assert probability_tolerance(torch.float16) == pytest.approx(4 * 2**-10)
    assert probability_tolerance(torch.bfloat16) == pytest.approx(4 * 2**-7)


def test_insertion_deletion_checks_a_probs_model_with_the_dtype_tolerance() -> None:
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (2, 3, 6, 6), dtype=torch.uint8, generator=g)
    saliency = torch.rand(2, 6, 6, generator=g)
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(108, 5)).eval()
    fn = metric_fn("insertion_deletion")
    expected = fn(net, images, saliency, step=9)
    bf16 = fn(lambda x: net(x).softmax(1).bfloat16(), images, saliency, step=9, outputs="probs")
    assert bf16["insertion"] == pytest.approx(expected["insertion"], abs=1e-2)
    with pytest.raises(BenchError, match="not logits"):  # a logits model declared as probs
        fn(net, images, saliency, step=9, outputs="probs")
    with pytest.raises(BenchError, match="NaN"):
        fn(lambda x: net(x) * float("nan"), images, saliency, step=9)


# -- masks stored as 0/1 in uint8 --------------------------------------------------------------


def issue_masks() -> tuple[np.ndarray, np.ndarray]:
    """Two 8×8 masks (uint8 0/1) and maps giving IoU 1 and 0.5 (thr0.5 recipe)."""
    masks = np.zeros((2, 8, 8), dtype=np.uint8)
    masks[:, :4] = 1  # the top half
    maps = np.zeros((2, 8, 8), dtype=np.float32)
    maps[0, :4] = 1.0  # exactly the mask: IoU 1
    maps[1, :2] = 1.0  # a quarter of the image inside the mask: IoU 16/32
    return maps, masks


def test_issue_instance_uint8_01_masks() -> None:
    maps, masks = issue_masks()
    miou = metric_fn("miou")
    assert miou(maps, masks) == 0.75  # was NaN: uint8 read as 0..255, every mask "empty"
    for encoded in (masks * 255, masks.astype(bool), masks.astype(np.int64), masks * 1.0):
        assert miou(maps, encoded) == 0.75
        assert miou(torch.from_numpy(maps), torch.from_numpy(encoded)) == 0.75
    d = metric_fn("miou_details")(maps, masks)
    assert d["per_image"] == [1.0, 0.5] and d["n_empty_masks"] == 0


def test_masks_are_read_one_at_a_time_and_other_values_refused() -> None:
    maps, masks = issue_masks()
    mixed = np.concatenate([masks, masks * 255])  # 0/1 and 0/255 masks together
    assert metric_fn("miou")(np.concatenate([maps, maps]), mixed) == 0.75
    soft = masks * 200  # soft uint8 masks (CUB): > 127 is foreground
    soft[0, 0] = 100
    assert as_mask(soft, name="m", soft=True)[0].sum() == 24
    with pytest.raises(BenchError, match="other integer values"):
        metric_fn("miou")(maps, masks.astype(np.int64) * 2)
    with pytest.raises(BenchError, match="float"):
        metric_fn("miou")(maps, masks * 1.5)
    # a 1-D mask (aligned samples): bool, 0/1 or uint8 0/255, nothing else
    acc = metric_fn("aligned_conflicting_accuracy")
    preds, labels, aligned = [0, 1, 1, 0], [0, 1, 0, 0], np.array([1, 1, 0, 0], np.uint8)
    expected = {"aligned": 1.0, "conflicting": 0.5}
    for a in (aligned, aligned * 255, aligned.astype(bool), aligned * 1.0, aligned[:, None]):
        assert acc(preds, labels, a) == expected
    for bad in (aligned * 2, aligned * 0.5, aligned * 254):
        with pytest.raises(BenchError, match="aligned must be bool, 0/1, or uint8 0/255"):
            acc(preds, labels, bad)


# -- NaN is never returned silently ------------------------------------------------------------


def test_undefined_values_warn_with_their_reason() -> None:
    with pytest.warns(UndefinedMetricWarning, match=r"medium is undefined \(NaN\): no class"):
        out = metric_fn("shot_accuracy")([0, 1, 1], [0, 1, 1], [500, 5, 50])
    assert math.isnan(out["medium"])
    with pytest.warns(UndefinedMetricWarning, match="conflicting is undefined.*no conflicting"):
        metric_fn("aligned_conflicting_accuracy")([0], [0], [True])
    with pytest.warns(UndefinedMetricWarning, match="miou is undefined.*all 2 masks are empty"):
        assert math.isnan(metric_fn("miou")(np.random.rand(2, 4, 4), np.zeros((2, 4, 4))))
    with pytest.warns(UndefinedMetricWarning, match="dcor2 is undefined.*4 samples"):
        r = metric_fn("dcor2_per_class")(
            np.random.rand(6, 2), np.random.rand(6), [0, 0, 0, 1, 1, 1]
        )
    assert math.isnan(r["mean"]) and "dcor2" in r["undefined"]
    # a defined value warns nothing
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metric_fn("shot_accuracy")([0, 1, 2], [0, 1, 2], [500, 5, 50])


# -- adversarial inputs against the references -------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs_give_the_reference_on_their_float64_copy(dtype) -> None:
    """Scores, OoD scores, features and saliency in float16/bfloat16 are read exactly (as
    their float64 copy); only probabilities need a wider tolerance."""
    import dcor
    from sklearn.metrics import roc_auc_score

    g = torch.Generator().manual_seed(3)
    scores = torch.randn(500, 7, generator=g).to(dtype)
    labels = torch.randint(0, 7, (500,), generator=g)
    wide = scores.double().numpy()
    assert metric_fn("accuracy")(scores, labels) == accuracy_score(labels, wide.argmax(1))
    id_s, ood_s = (
        torch.randn(300, generator=g).to(dtype) + 1,
        torch.randn(200, generator=g).to(dtype),
    )
    truth = np.r_[np.ones(300), np.zeros(200)]
    both = np.r_[id_s.double().numpy(), ood_s.double().numpy()]  # many ties after rounding
    assert metric_fn("ood")(id_s, ood_s)["auroc"] == pytest.approx(
        roc_auc_score(truth, both), abs=1e-12
    )
    x, y = torch.randn(60, 3, generator=g).to(dtype), torch.randn(60, generator=g).to(dtype)
    assert metric_fn("dcor2")(x, y, unbiased=True) == pytest.approx(
        dcor.u_distance_correlation_sqr(x.double().numpy(), y.double().numpy()), abs=1e-10
    )
    maps, masks = issue_masks()
    assert metric_fn("miou")(torch.from_numpy(maps).to(dtype), masks) == 0.75


def test_single_class_all_wrong_constant_and_nan_inputs() -> None:
    labels = np.zeros(6, dtype=np.int64)  # a single class
    for preds in (np.zeros(6, np.int64), np.ones(6, np.int64), np.array([0, 1, 0, 1, 2, 0])):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = balanced_accuracy_score(labels[:, None], preds[:, None])
        assert metric_fn("balanced_accuracy")(preds[:, None], labels[:, None]) == ref
        assert metric_fn("accuracy")(preds, labels) == accuracy_score(labels, preds)
    constant = np.zeros((5, 3))  # every score tied: class 0
    assert metric_fn("accuracy")(constant, [0, 0, 1, 2, 0]) == 0.6
    assert metric_fn("dcor2")(np.ones((8, 2)), np.random.rand(8)) == 0.0
    nan_cases = {
        "accuracy": ([0.0, float("nan")], [0, 1]),
        "balanced_accuracy": ([0, 1], [0.0, float("nan")]),
        "worst_group_accuracy": ([0, 1], [0, 1], [0.0, float("nan")]),
        "ece": ([[0.5, 0.5], [float("nan"), 0.5]], [0, 1]),
        "ood": ([0.1, float("nan")], [0.3]),
        "dcor2_per_class": (np.full((4, 2), np.nan), np.ones(4), [0, 0, 0, 0]),
        "miou": (np.random.rand(1, 2, 2), np.array([[[0.0, np.nan], [1.0, 1.0]]])),
    }
    for name, args in nan_cases.items():
        with pytest.raises(BenchError, match="NaN"):
            metric_fn(name)(*args)
