"""Bias-aligned vs bias-conflicting accuracy (Nam et al. 2020, Learning from Failure): accuracy
on the samples whose spurious attribute agrees with the label, and on those where it does not."""

from __future__ import annotations

from typing import Any

from benchmark import EvalView, Metric, register_metric
from benchmark.errors import BenchError
from benchmark.metric import as_labels, as_mask, check_same_length, warn_undefined


def _aligned_conflicting(
    preds: Any, labels: Any, aligned: Any
) -> tuple[dict[str, float], dict[str, str]]:
    """(accuracies, reasons for the undefined ones)."""
    p, y = as_labels(preds, name="preds", scores=True), as_labels(labels)
    a = as_mask(aligned, name="aligned", device=p.device)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        raise BenchError(f"aligned must be one flag per sample (N,), got shape {tuple(a.shape)}")
    check_same_length(preds=p, labels=y, aligned=a)
    hit = (p == y.to(p.device)).double()
    out, reasons = {}, {}
    for key, sel, other in (("aligned", a, "conflicting"), ("conflicting", ~a, "aligned")):
        if sel.any():
            out[key] = float(hit[sel].mean())
        else:
            out[key] = float("nan")
            reasons[key] = f"no {key} sample (every sample is {other})"
    return out, reasons


def aligned_conflicting_accuracy(preds: Any, labels: Any, aligned: Any) -> dict[str, float]:
    """``{"aligned", "conflicting"}`` accuracies.

    ``preds``: indices or scores (N, C >= 2); ``labels``: indices (N,) or an integer (N, 1)
    column; ``aligned``: a mask (N,) (bool, 0/1, or uint8 0/255). A subset with no sample is
    NaN, with an ``UndefinedMetricWarning`` saying so.
    """
    out, reasons = _aligned_conflicting(preds, labels, aligned)
    warn_undefined(reasons)
    return out


@register_metric("bias-alignment")
class BiasAlignment(Metric):
    """Accuracy on bias-aligned and on bias-conflicting samples."""

    requires = ("preds", "labels", "attr:aligned")
    higher_is_better = {"aligned": True, "conflicting": True}
    functions = {"aligned_conflicting_accuracy": aligned_conflicting_accuracy}

    def _result(self, view: EvalView) -> tuple[dict[str, float], dict[str, str]]:
        keep = view.labels >= 0
        return _aligned_conflicting(
            view.outputs.preds[keep], view.labels[keep], view.attrs["aligned"][keep]
        )

    def compute(self, view: EvalView) -> dict[str, float]:
        return self._result(view)[0]

    def details(self, view: EvalView) -> dict[str, Any]:
        reasons = self._result(view)[1]
        return {"undefined": reasons} if reasons else {}
