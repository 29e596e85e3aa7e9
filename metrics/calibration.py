"""Calibration error of the top-label confidence: ECE (Naeini et al. 2015; Guo et al. 2017,
eq. 3), MCE (its max-norm version) and adaptive ECE with equal-mass bins (Nixon et al. 2019).

ECE = Σ_b (n_b / N) |acc(b) − conf(b)| over 15 equal-width bins of the confidence
max_k p_k; empty bins weigh 0. The binning is that of torchmetrics'
``multiclass_calibration_error`` (the reference): bin b holds confidences in
[b/15, (b+1)/15), boundaries in the dtype of the probabilities, and a confidence of exactly
1.0 falls in a bin of its own. MCE = max_b |acc(b) − conf(b)| over those bins (an empty bin
counts 0). Adaptive ECE sorts the confidences (stable) and cuts them into ``n_bins`` runs of
equal size (sizes differ by at most one, the longer runs first, as ``numpy.array_split``).
The inputs are probabilities: rows must be finite, non-negative and sum to 1 within 1e-3.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from benchmark import EvalView, Metric, register_metric
from benchmark.errors import BenchError
from benchmark.metric import as_labels, check_same_length

N_BINS = 15
SUM_TOLERANCE = 1e-3


def _top_label(probs: Any, labels: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(confidence, correct) per sample, after checking that ``probs`` are probabilities."""
    p = probs.detach() if isinstance(probs, torch.Tensor) else torch.as_tensor(np.asarray(probs))
    if p.ndim != 2 or not p.is_floating_point():
        raise BenchError(
            f"probs must be a float (N, C) array of probabilities, got {p.dtype} {tuple(p.shape)}"
        )
    y = as_labels(labels, device=p.device)
    check_same_length(probs=p, labels=y)
    sums = p.sum(dim=1)  # NaN and inf show up here
    # every check from one host read (one device sync on the GPU, not five)
    finite, lowest, worst, y_min, y_max = torch.stack(
        [
            torch.isfinite(sums).all().double(),
            p.amin().double(),
            (sums.double() - 1).abs().max(),
            y.min().double(),
            y.max().double(),
        ]
    ).tolist()
    if not finite:
        raise BenchError("probs contains NaN or infinite values")
    if lowest < 0:
        raise BenchError("probs has negative entries: pass probabilities (softmax), not logits")
    if worst > SUM_TOLERANCE:
        raise BenchError(
            f"probs rows must sum to 1 (within {SUM_TOLERANCE}); one is off by {worst:.3g}: "
            "pass probabilities (softmax), not logits"
        )
    if y_min < 0 or y_max >= p.shape[1]:
        raise BenchError(f"labels must lie in [0, {p.shape[1]}) (one column of probs per class)")
    conf, pred = p.max(dim=1)
    return conf.clamp(max=1.0), pred == y


def _check_bins(n_bins: int) -> None:
    if not isinstance(n_bins, int) or isinstance(n_bins, bool) or n_bins < 1:
        raise BenchError(f"n_bins must be a positive integer, got {n_bins!r}")


def reliability_bins(probs: Any, labels: Any, n_bins: int = N_BINS) -> dict[str, torch.Tensor]:
    """Equal-width bins: ``lo``, ``hi``, ``count``, ``accuracy``, ``confidence`` (n_bins + 1
    entries; the last is the bin [1, 1]). Empty bins have accuracy and confidence 0."""
    _check_bins(n_bins)
    conf, correct = _top_label(probs, labels)
    edges = torch.linspace(0, 1, n_bins + 1, dtype=conf.dtype, device=conf.device)
    index = torch.bucketize(conf, edges, right=True) - 1
    # count, Σ confidence, Σ correct per bin in one scatter (no bincount: on CUDA it reads the
    # largest index back to the host)
    values = torch.stack(
        [torch.ones_like(conf, dtype=torch.float64), conf.double(), correct.double()]
    )
    sums = torch.zeros(3, n_bins + 1, dtype=torch.float64, device=conf.device)
    count, conf_sum, hit_sum = sums.scatter_add_(1, index.expand(3, -1), values)
    safe = count.clamp(min=1)
    hi = torch.cat([edges[1:], edges[-1:]]).double()
    return {
        "lo": edges.double(),
        "hi": hi,
        "count": count,
        "accuracy": hit_sum / safe,
        "confidence": conf_sum / safe,
    }


def ece(probs: Any, labels: Any, n_bins: int = N_BINS) -> float:
    """Expected calibration error (L1, equal-width bins, weights = bin frequency)."""
    b = reliability_bins(probs, labels, n_bins)
    gap = (b["accuracy"] - b["confidence"]).abs()
    return float((gap * b["count"]).sum() / b["count"].sum())


def mce(probs: Any, labels: Any, n_bins: int = N_BINS) -> float:
    """Maximum calibration error over the equal-width bins (empty bins count 0)."""
    b = reliability_bins(probs, labels, n_bins)
    return float((b["accuracy"] - b["confidence"]).abs().max())


def adaptive_ece(probs: Any, labels: Any, n_bins: int = N_BINS) -> float:
    """ECE over equal-mass bins: sorted confidences cut into ``n_bins`` equal-size runs."""
    _check_bins(n_bins)
    conf, correct = _top_label(probs, labels)
    order = torch.sort(conf, stable=True).indices
    n = len(conf)
    # numpy.array_split: the first n % n_bins runs hold one sample more
    sizes = torch.full((n_bins,), n // n_bins, dtype=torch.long, device=conf.device)
    sizes[: n % n_bins] += 1
    index = torch.repeat_interleave(torch.arange(n_bins, device=conf.device), sizes, output_size=n)
    conf_sum = torch.zeros(n_bins, dtype=torch.float64, device=conf.device)
    conf_sum.scatter_add_(0, index, conf[order].double())
    hit_sum = torch.zeros_like(conf_sum).scatter_add_(0, index, correct[order].double())
    return float((hit_sum - conf_sum).abs().sum() / n)


def _table(b: dict[str, torch.Tensor]) -> list[dict[str, float]]:
    rows = zip(*(b[k].tolist() for k in ("lo", "hi", "count", "accuracy", "confidence")))
    return [
        {"lo": round(lo, 6), "hi": round(hi, 6), "count": int(c), "accuracy": a, "confidence": f}
        for lo, hi, c, a, f in rows
    ]


@register_metric("calibration")
class Calibration(Metric):
    """ECE, MCE (15 equal-width bins, torchmetrics binning) and adaptive ECE (equal mass)."""

    requires = ("probs", "labels")
    higher_is_better = {"ece": False, "mce": False, "adaptive_ece": False}
    convention = "top-label confidence, 15 bins [b/15,(b+1)/15) + {1.0} (torchmetrics), L1"
    functions = {
        "ece": ece,
        "mce": mce,
        "adaptive_ece": adaptive_ece,
        "reliability_bins": reliability_bins,
    }

    def _inputs(self, view: EvalView) -> tuple[torch.Tensor, torch.Tensor]:
        keep = view.labels >= 0  # OoD samples carry label -1
        return view.outputs.probs[keep], view.labels[keep]

    def compute(self, view: EvalView) -> dict[str, float]:
        probs, labels = self._inputs(view)
        if len(labels) == 0:
            return {}
        return {
            "ece": ece(probs, labels),
            "mce": mce(probs, labels),
            "adaptive_ece": adaptive_ece(probs, labels),
        }

    def details(self, view: EvalView) -> dict[str, Any]:
        probs, labels = self._inputs(view)
        if len(labels) == 0:
            return {}
        return {"bins": _table(reliability_bins(probs, labels))}
