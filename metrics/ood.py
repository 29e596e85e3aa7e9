"""Out-of-distribution detection from a score where higher means more in-distribution.

- AUROC with ID as the positive class; ties count ½ (scikit-learn ``roc_auc_score``).
- ``fpr95``: the classic FPR at 95% TPR of ODIN (Liang et al. 2018), Mahalanobis (Lee et al.
  2018) and SDE-Net: the fraction of OoD samples accepted as ID at the highest threshold that
  keeps ≥ 95% of ID samples (their "TNR at TPR 95%" is 1 − this).
- ``fpr95_ood_positive``: OpenOOD v1.5's swapped version: OoD is positive (score negated), the
  fraction of ID samples rejected at the threshold that catches ≥ 95% of OoD.
- AUPR-In / AUPR-Out: the trapezoid rule over scikit-learn's ``precision_recall_curve`` with ID
  (resp. OoD, score negated) positive, the OpenOOD convention (not average precision).

Every curve is built from one sort on the device: at each distinct score (descending), the
cumulative true and false positives, as scikit-learn's ``_binary_clf_curve``. Thresholds are
all distinct scores (scikit-learn's ``roc_curve(drop_intermediate=False)``).
"""

from __future__ import annotations

from typing import Any

import torch

from benchmark import EvalView, Metric, register_metric
from benchmark.errors import BenchError
from benchmark.metric import as_tensor

TPR_LEVEL = 0.95
#: bins of the score histograms kept in the record (``details``)
HIST_BINS = 40


def _scores(x: Any, name: str, device: torch.device | None) -> torch.Tensor:
    t = as_tensor(x, name=name, device=device).double()
    if t.ndim == 2 and t.shape[1] == 1:  # a column of scores: one per sample, unambiguous
        t = t[:, 0]
    if t.ndim != 1:
        raise BenchError(
            f"{name} must be one score per sample, (N,) or (N, 1), got shape {tuple(t.shape)}"
        )
    if len(t) == 0:
        raise BenchError(f"{name} is empty: OoD metrics need both ID and OoD samples")
    return t


def binary_curve(pos: torch.Tensor, neg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cumulative (true positives, false positives) at each distinct score, descending."""
    scores, order = torch.sort(torch.cat([pos, neg]), descending=True, stable=True)
    is_pos = order < len(pos)
    last = torch.nonzero(scores[1:] != scores[:-1]).flatten()
    last = torch.cat([last, last.new_tensor([len(scores) - 1])])
    tps = torch.cumsum(is_pos, 0)[last]
    fps = last + 1 - tps
    return tps.double(), fps.double()


def _swap(tps: torch.Tensor, fps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The curve with the classes swapped and the score negated: the same tie groups in
    reverse order, so no second sort."""
    zero = tps.new_zeros(1)
    id_per_group = torch.diff(tps, prepend=zero).flip(0)
    ood_per_group = torch.diff(fps, prepend=zero).flip(0)
    return torch.cumsum(ood_per_group, 0), torch.cumsum(id_per_group, 0)


def _trapezoid(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2).sum()


def _fpr_at_tpr(tps: torch.Tensor, fps: torch.Tensor, level: float) -> float:
    tpr = tps / tps[-1]  # same float comparison as scikit-learn's roc_curve
    first = int(torch.nonzero(tpr >= level)[0])
    return float(fps[first] / fps[-1])


def _auroc(tps: torch.Tensor, fps: torch.Tensor) -> float:
    zero = tps.new_zeros(1)
    return float(_trapezoid(torch.cat([zero, fps / fps[-1]]), torch.cat([zero, tps / tps[-1]])))


def _aupr(tps: torch.Tensor, fps: torch.Tensor) -> float:
    recall = torch.cat([tps.new_zeros(1), tps / tps[-1]])
    precision = torch.cat([tps.new_ones(1), tps / (tps + fps)])
    return float(_trapezoid(recall, precision))


def ood(id_scores: Any, ood_scores: Any) -> dict[str, float]:
    """``{"auroc", "fpr95", "fpr95_ood_positive", "aupr_in", "aupr_out"}`` from scores (N,)
    or (N, 1) where higher means more in-distribution, in any float or integer dtype (read
    in float64). Empty sets, NaN and inf are a ``BenchError``."""
    device = next((t.device for t in (id_scores, ood_scores) if isinstance(t, torch.Tensor)), None)
    s_id = _scores(id_scores, "id_scores", device)
    s_ood = _scores(ood_scores, "ood_scores", device).to(s_id.device)
    tps, fps = binary_curve(s_id, s_ood)  # ID positive
    tps_o, fps_o = _swap(tps, fps)  # OoD positive, score negated
    return {
        "auroc": _auroc(tps, fps),
        "fpr95": _fpr_at_tpr(tps, fps, TPR_LEVEL),
        "fpr95_ood_positive": _fpr_at_tpr(tps_o, fps_o, TPR_LEVEL),
        "aupr_in": _aupr(tps, fps),
        "aupr_out": _aupr(tps_o, fps_o),
    }


@register_metric("ood")
class OoDDetection(Metric):
    """AUROC, FPR@95TPR (classic and OoD-positive), AUPR-In/Out of the method's OoD score."""

    requires = ("ood_score", "attr:is_ood")
    higher_is_better = {
        "auroc": True,
        "fpr95": False,
        "fpr95_ood_positive": False,
        "aupr_in": True,
        "aupr_out": True,
    }
    convention = (
        "score higher = ID; AUROC ties ½; fpr95 = OoD accepted at ≥95% ID kept (ODIN); "
        "fpr95_ood_positive = ID rejected at ≥95% OoD caught (OpenOOD v1.5); AUPR trapezoid"
    )
    functions = {"ood": ood}

    def compute(self, view: EvalView) -> dict[str, float]:
        score, is_ood = view.outputs.ood_score, view.attrs["is_ood"].bool()
        return ood(score[~is_ood], score[is_ood])

    def details(self, view: EvalView) -> dict[str, Any]:
        is_ood = view.attrs["is_ood"].bool()
        score = view.outputs.ood_score
        return {
            "n_id": int((~is_ood).sum()),
            "n_ood": int(is_ood.sum()),
            "score": view.outputs.ood_score_kind or "unnamed",
            "histogram": score_histogram(score[~is_ood], score[is_ood]),
        }


def score_histogram(id_scores: Any, ood_scores: Any, bins: int = HIST_BINS) -> dict[str, Any]:
    """Histograms of the ID and OoD scores on shared equal-width bins spanning the 0.5th to
    99.5th percentile of all scores (what ``bench plot ood-scores`` draws): ``edges``
    (bins + 1), ``id`` and ``ood`` counts (bins); scores outside the span are counted in the
    end bins and their number is in ``clipped``."""
    s_id = _scores(id_scores, "id_scores", None).cpu()
    s_ood = _scores(ood_scores, "ood_scores", None).cpu()
    both = torch.cat([s_id, s_ood])
    lo, hi = (float(v) for v in torch.quantile(both, both.new_tensor([0.005, 0.995])))
    if not hi > lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = torch.linspace(lo, hi, bins + 1, dtype=torch.float64)

    def counts(s: torch.Tensor) -> list[int]:
        index = ((s - lo) / (hi - lo) * bins).floor().long().clamp(0, bins - 1)
        return torch.bincount(index, minlength=bins).tolist()

    return {
        "edges": [float(e) for e in edges],
        "id": counts(s_id),
        "ood": counts(s_ood),
        "clipped": int(((both < lo) | (both > hi)).sum()),
    }
