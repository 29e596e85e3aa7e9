"""Many / Medium / Few-shot accuracy (Kang et al. 2020, classifier-balancing ``shot_acc``).

Classes are split by their number of *training* images: Many ``n > 100``, Medium
``20 <= n <= 100``, Few ``n < 20``. Each group's score is the unweighted mean of its classes'
test accuracies; a group with no class in the test labels is NaN (printed "—"), never 0.
"""

from __future__ import annotations

from typing import Any

import torch

from benchmark import EvalView, Metric, register_metric
from benchmark.errors import BenchError
from benchmark.metric import as_labels, check_same_length, per_class_accuracy, warn_undefined

MANY, FEW = 100, 20


def shot_groups(
    train_counts: torch.Tensor, many: int = MANY, few: int = FEW
) -> dict[str, torch.Tensor]:
    """Boolean class masks for the three groups."""
    return {
        "many": train_counts > many,
        "medium": (train_counts >= few) & (train_counts <= many),
        "few": train_counts < few,
    }


def _shot_accuracy(
    preds: Any, labels: Any, train_counts: Any, many: int = MANY, few: int = FEW
) -> tuple[dict[str, float], dict[str, str]]:
    """(group accuracies, reasons for the undefined (NaN) ones)."""
    p, y = as_labels(preds, name="preds", scores=True), as_labels(labels)
    counts = as_labels(train_counts, name="train_counts", what="image counts", device=p.device)
    check_same_length(preds=p, labels=y)
    y = y.to(p.device)
    k = len(counts)
    if int(y.max()) >= k or int(y.min()) < 0:
        raise BenchError(f"labels must lie in [0, {k}) (one train count per class)")
    if int(counts.min()) < 0:
        raise BenchError("train_counts must be non-negative numbers of training images")
    recall, test_counts = per_class_accuracy(p, y, k)
    present = test_counts > 0
    out, reasons = {}, {}
    rule = {"many": f"> {many}", "medium": f"{few}–{many}", "few": f"< {few}"}
    for group, mask in shot_groups(counts, many, few).items():
        sel = recall[mask & present]
        out[group] = float(sel.mean()) if len(sel) else float("nan")
        if not len(sel):
            where = "in the test labels" if mask.any() else "at all"
            reasons[group] = f"no class with {rule[group]} training images {where}"
    return out, reasons


def shot_accuracy(
    preds: Any, labels: Any, train_counts: Any, many: int = MANY, few: int = FEW
) -> dict[str, float]:
    """``{"many", "medium", "few"}`` accuracies.

    ``preds``: indices or scores (N, C >= 2); ``labels``: indices (N,) or an integer (N, 1)
    column; ``train_counts``: training images per class (C,). A group with no class in the
    test labels is NaN, with an ``UndefinedMetricWarning`` giving the reason.
    """
    out, reasons = _shot_accuracy(preds, labels, train_counts, many, few)
    warn_undefined(reasons)
    return out


@register_metric("shot-accuracy")
class ShotAccuracy(Metric):
    """Many/Medium/Few accuracy by training-set class frequency (>100, 20–100, <20)."""

    requires = ("preds", "labels", "train_counts")
    higher_is_better = {"many": True, "medium": True, "few": True}
    tracks = ("longtail",)
    convention = "many: n>100, medium: 20<=n<=100, few: n<20 training images; mean of class accs"
    functions = {"shot_accuracy": shot_accuracy}

    def compute(self, view: EvalView) -> dict[str, float]:
        keep = view.labels >= 0
        return _shot_accuracy(view.outputs.preds[keep], view.labels[keep], view.train_counts)[0]

    def details(self, view: EvalView) -> dict[str, Any]:
        keep = view.labels >= 0
        preds, labels = view.outputs.preds[keep], view.labels[keep]
        recall, _ = per_class_accuracy(preds, labels, len(view.train_counts))
        reasons = _shot_accuracy(preds, labels, view.train_counts)[1]
        return {
            "per_class_acc": [None if v != v else round(float(v), 6) for v in recall.tolist()],
            "train_counts": view.train_counts.tolist(),
            **({"undefined": reasons} if reasons else {}),
        }
