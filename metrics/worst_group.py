"""Worst-group accuracy (WILDS convention): the minimum per-group accuracy over the groups
that have samples; the per-group table and the group of the minimum go to the details."""

from __future__ import annotations

from typing import Any

import torch

from benchmark import EvalView, Metric, register_metric
from benchmark.metric import as_labels, check_same_length


def worst_group_accuracy(preds: Any, labels: Any, groups: Any) -> dict[str, Any]:
    """Minimum per-group accuracy.

    ``preds``: indices or scores (N, C >= 2); ``labels``, ``groups``: integers (N,) or an
    integer (N, 1) column. Returns ``{"worst", "worst_group" (its id), "per_group": {id: acc},
    "counts": {id: n}}`` over the groups that have samples (so never NaN).
    """
    p, y = as_labels(preds, name="preds", scores=True), as_labels(labels)
    g = as_labels(groups, name="groups", what="group ids")
    check_same_length(preds=p, labels=y, groups=g)
    y, g = y.to(p.device), g.to(p.device)
    ids, inverse = torch.unique(g, return_inverse=True)
    n = torch.bincount(inverse, minlength=len(ids))
    hits = torch.bincount(inverse[p == y], minlength=len(ids))
    acc = hits.double() / n.double()
    worst = int(acc.argmin())
    return {
        "worst": float(acc[worst]),
        "worst_group": int(ids[worst]),
        "per_group": {int(i): float(a) for i, a in zip(ids.tolist(), acc.tolist())},
        "counts": {int(i): int(c) for i, c in zip(ids.tolist(), n.tolist())},
    }


@register_metric("worst-group-accuracy")
class WorstGroupAccuracy(Metric):
    """Minimum accuracy over groups (e.g. label × spurious attribute)."""

    requires = ("preds", "labels", "attr:group")
    higher_is_better = {"worst_group": True, "mean_group": True}
    convention = "min over groups with samples (WILDS); mean_group = unweighted mean"
    functions = {"worst_group_accuracy": worst_group_accuracy}

    def _result(self, view: EvalView) -> dict[str, Any]:
        keep = view.labels >= 0
        return worst_group_accuracy(
            view.outputs.preds[keep], view.labels[keep], view.attrs["group"][keep]
        )

    def compute(self, view: EvalView) -> dict[str, float]:
        r = self._result(view)
        per = list(r["per_group"].values())
        return {"worst_group": r["worst"], "mean_group": sum(per) / len(per)}

    def details(self, view: EvalView) -> dict[str, Any]:
        r = self._result(view)
        return {"worst_group": r["worst_group"], "per_group": r["per_group"], "counts": r["counts"]}
