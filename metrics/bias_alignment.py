"""Bias-aligned vs bias-conflicting accuracy (Nam et al. 2020, Learning from Failure): accuracy
on the samples whose spurious attribute agrees with the label, and on those where it does not."""

from __future__ import annotations

from typing import Any

from benchmark import EvalView, Metric, register_metric
from benchmark.metric import as_labels, as_tensor, check_same_length


def aligned_conflicting_accuracy(preds: Any, labels: Any, aligned: Any) -> dict[str, float]:
    """``{"aligned", "conflicting"}`` accuracies (NaN when a subset is empty)."""
    p, y = as_labels(preds, name="preds"), as_labels(labels)
    a = as_tensor(aligned, name="aligned").to(p.device).bool()
    check_same_length(preds=p, labels=y, aligned=a)
    hit = (p == y.to(p.device)).double()
    return {
        "aligned": float(hit[a].mean()) if a.any() else float("nan"),
        "conflicting": float(hit[~a].mean()) if (~a).any() else float("nan"),
    }


@register_metric("bias-alignment")
class BiasAlignment(Metric):
    """Accuracy on bias-aligned and on bias-conflicting samples."""

    requires = ("preds", "labels", "attr:aligned")
    higher_is_better = {"aligned": True, "conflicting": True}
    functions = {"aligned_conflicting_accuracy": aligned_conflicting_accuracy}

    def compute(self, view: EvalView) -> dict[str, float]:
        keep = view.labels >= 0
        return aligned_conflicting_accuracy(
            view.outputs.preds[keep], view.labels[keep], view.attrs["aligned"][keep]
        )
