"""Balanced accuracy: mean per-class recall over the classes present in the labels.

Convention of scikit-learn's ``balanced_accuracy_score`` (adjusted=False): a class that is never
predicted counts with recall 0; a class that appears only in the predictions is ignored.
"""

from __future__ import annotations

from typing import Any

from benchmark import EvalView, Metric, register_metric
from benchmark.errors import BenchError
from benchmark.metric import as_labels, check_same_length, per_class_accuracy


def balanced_accuracy(preds: Any, labels: Any) -> float:
    """Mean recall over classes present in ``labels``.

    Inputs as for ``accuracy``: ``preds`` indices (N,) / integer (N, 1) or scores (N, C >= 2),
    ``labels`` non-negative indices (N,) / integer (N, 1); ``BenchError`` otherwise.
    """
    p, y = as_labels(preds, name="preds", scores=True), as_labels(labels)
    check_same_length(preds=p, labels=y)
    y = y.to(p.device)
    if (y < 0).any():
        raise BenchError("labels must be non-negative class indices")
    k = int(max(int(y.max()), int(p.max())) + 1)
    recall, counts = per_class_accuracy(p, y, k)
    return float(recall[counts > 0].mean())


@register_metric("balanced-accuracy")
class BalancedAccuracy(Metric):
    """Balanced accuracy (mean per-class recall, scikit-learn convention)."""

    requires = ("preds", "labels")
    higher_is_better = {"bacc": True}
    functions = {"balanced_accuracy": balanced_accuracy}

    def compute(self, view: EvalView) -> dict[str, float]:
        keep = view.labels >= 0
        return {"bacc": balanced_accuracy(view.outputs.preds[keep], view.labels[keep])}
