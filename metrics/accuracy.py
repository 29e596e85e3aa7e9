"""Top-1 accuracy: the fraction of samples whose predicted class equals the label."""

from __future__ import annotations

from typing import Any

from benchmark import EvalView, Metric, register_metric
from benchmark.metric import as_labels, check_same_length


def accuracy(preds: Any, labels: Any) -> float:
    """Fraction correct.

    ``preds``: class indices (N,) or an integer (N, 1) column, or scores (N, C >= 2)
    (arg-maxed); ``labels``: class indices (N,) or an integer (N, 1) column. A float (N, 1)
    column is ambiguous and refused (``BenchError``), as are NaN and mismatched lengths.
    """
    p, y = as_labels(preds, name="preds", scores=True), as_labels(labels)
    check_same_length(preds=p, labels=y)
    return float((p == y.to(p.device)).double().mean())


@register_metric("accuracy")
class Accuracy(Metric):
    """Top-1 accuracy."""

    requires = ("preds", "labels")
    higher_is_better = {"acc": True}
    functions = {"accuracy": accuracy}

    def compute(self, view: EvalView) -> dict[str, float]:
        keep = view.labels >= 0  # OoD samples carry label -1
        return {"acc": accuracy(view.outputs.preds[keep], view.labels[keep])}
