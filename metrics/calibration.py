"""Calibration error of the top-label confidence: ECE (Naeini et al. 2015; Guo et al. 2017,
eq. 3), MCE (its max-norm version) and adaptive ECE with equal-mass bins (Nixon et al. 2019).

ECE = Σ_m (n_m / N) |acc(m) − conf(m)| over 15 equal-width bins of the confidence
max_k p_k; empty bins weigh 0. MCE = max_m |acc(m) − conf(m)| (an empty bin counts 0).

Binning (``binning=``):

- ``"guo"`` (default): Guo et al. 2017, eq. 3, and their reference code: bin m holds
  confidences in ((m − 1)/M, m/M], so a confidence of exactly 1.0 falls in the last bin (and
  0 in the first). The edges are m/M rounded to the probabilities' dtype, so a confidence
  written as 0.8 falls in (11/15, 12/15] in float32 as in float64.
- ``"torchmetrics"``: torchmetrics' ``multiclass_calibration_error``: bin b holds
  [b/M, (b+1)/M) with edges ``torch.linspace`` in the probabilities' dtype, and a confidence of
  exactly 1.0 has a bin of its own (M + 1 bins).

Adaptive ECE sorts the confidences (stable) and cuts them into ``n_bins`` runs of equal size
(sizes differ by at most one, the longer runs first, as ``numpy.array_split``).
The inputs are probabilities (N, C >= 2): rows must be finite, non-negative and sum to 1 (in
float64) within 1e-3 for float32/float64, 4 machine epsilons for float16 (3.9e-3) and
bfloat16 (3.1e-2). Labels are class indices (N,) or an integer (N, 1) column.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from benchmark import EvalView, Metric, register_metric
from benchmark.errors import BenchError, UnknownNameError
from benchmark.metric import as_labels, check_probabilities, check_same_length

N_BINS = 15
BINNINGS = ("guo", "torchmetrics")


def _top_label(probs: Any, labels: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(confidence, correct) per sample, after checking that ``probs`` are probabilities."""
    p = probs.detach() if isinstance(probs, torch.Tensor) else torch.as_tensor(np.asarray(probs))
    y = as_labels(labels, device=p.device)
    check_probabilities(p, name="probs")
    check_same_length(probs=p, labels=y)
    y_min, y_max = torch.stack([y.min(), y.max()]).tolist()
    if y_min < 0 or y_max >= p.shape[1]:
        raise BenchError(f"labels must lie in [0, {p.shape[1]}) (one column of probs per class)")
    conf, pred = p.max(dim=1)
    return conf.clamp(max=1.0), pred == y


def _check_bins(n_bins: int) -> None:
    if not isinstance(n_bins, int) or isinstance(n_bins, bool) or n_bins < 1:
        raise BenchError(f"n_bins must be a positive integer, got {n_bins!r}")


def _check_binning(binning: str) -> None:
    if binning not in BINNINGS:
        raise UnknownNameError("ECE binning", binning, BINNINGS)


def _bin_index(conf: torch.Tensor, n_bins: int, binning: str) -> tuple[torch.Tensor, ...]:
    """(bin of each confidence, lower edges, upper edges) as float64 edges."""
    if binning == "guo":
        m = torch.arange(n_bins + 1, dtype=torch.float64, device=conf.device)
        edges = (m / n_bins).to(conf.dtype).double()  # exact in float64 after the rounding
        index = torch.bucketize(conf.double(), edges, right=False) - 1  # (lo, hi]
        return index.clamp(0, n_bins - 1), edges[:-1], edges[1:]
    edges = torch.linspace(0, 1, n_bins + 1, dtype=conf.dtype, device=conf.device)
    index = torch.bucketize(conf, edges, right=True) - 1  # [lo, hi), and 1.0 alone
    return index, edges.double(), torch.cat([edges[1:], edges[-1:]]).double()


def reliability_bins(
    probs: Any, labels: Any, n_bins: int = N_BINS, binning: str = "guo"
) -> dict[str, torch.Tensor]:
    """Equal-width bins: ``lo``, ``hi``, ``count``, ``accuracy``, ``confidence`` (float64).

    ``binning="guo"``: ``n_bins`` bins (lo, hi]; ``"torchmetrics"``: ``n_bins + 1`` bins
    [lo, hi), the last being [1, 1]. Empty bins have accuracy and confidence 0.
    """
    _check_bins(n_bins)
    _check_binning(binning)
    conf, correct = _top_label(probs, labels)
    index, lo, hi = _bin_index(conf, n_bins, binning)
    # count, Σ confidence, Σ correct per bin in one scatter (no bincount: on CUDA it reads the
    # largest index back to the host)
    values = torch.stack(
        [torch.ones_like(conf, dtype=torch.float64), conf.double(), correct.double()]
    )
    sums = torch.zeros(3, len(lo), dtype=torch.float64, device=conf.device)
    count, conf_sum, hit_sum = sums.scatter_add_(1, index.expand(3, -1), values)
    safe = count.clamp(min=1)
    return {
        "lo": lo,
        "hi": hi,
        "count": count,
        "accuracy": hit_sum / safe,
        "confidence": conf_sum / safe,
    }


def ece(probs: Any, labels: Any, n_bins: int = N_BINS, binning: str = "guo") -> float:
    """Expected calibration error (L1, equal-width bins, weights = bin frequency).

    ``probs``: probabilities (N, C >= 2) in any float dtype; ``labels``: class indices (N,)
    or an integer (N, 1) column; ``binning``: ``"guo"`` (Guo et al. 2017, default) or
    ``"torchmetrics"`` (see the module docstring). Bad input is a ``BenchError``.
    """
    b = reliability_bins(probs, labels, n_bins, binning)
    gap = (b["accuracy"] - b["confidence"]).abs()
    return float((gap * b["count"]).sum() / b["count"].sum())


def mce(probs: Any, labels: Any, n_bins: int = N_BINS, binning: str = "guo") -> float:
    """Maximum calibration error over the equal-width bins (empty bins count 0); arguments
    as for ``ece``."""
    b = reliability_bins(probs, labels, n_bins, binning)
    return float((b["accuracy"] - b["confidence"]).abs().max())


def adaptive_ece(probs: Any, labels: Any, n_bins: int = N_BINS) -> float:
    """ECE over equal-mass bins: sorted confidences cut into ``n_bins`` equal-size runs
    (inputs as for ``ece``)."""
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
    """ECE, MCE (15 equal-width bins, Guo et al.'s binning) and adaptive ECE (equal mass)."""

    requires = ("probs", "labels")
    higher_is_better = {"ece": False, "mce": False, "adaptive_ece": False}
    binning = "guo"
    convention = (
        "top-label confidence, L1; binning guo: 15 bins ((m-1)/15, m/15], 1.0 in the last "
        "(Guo et al. 2017 eq. 3); adaptive_ece: 15 equal-mass bins"
    )
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
        b = reliability_bins(probs, labels, binning=self.binning)
        gap = (b["accuracy"] - b["confidence"]).abs()
        return {
            "ece": float((gap * b["count"]).sum() / b["count"].sum()),
            "mce": float(gap.max()),
            "adaptive_ece": adaptive_ece(probs, labels),
        }

    def details(self, view: EvalView) -> dict[str, Any]:
        probs, labels = self._inputs(view)
        if len(labels) == 0:
            return {}
        bins = reliability_bins(probs, labels, binning=self.binning)
        return {"binning": self.binning, "bins": _table(bins)}
