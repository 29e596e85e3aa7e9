"""Distance correlation squared (Székely, Rizzo & Bakirov 2007) and the bias-track metric of
Metadata Normalization (Lu et al., CVPR 2021): dcor² between penultimate features and the
confounder, within each class, averaged over classes. On bias datasets without a float
``confounder`` the categorical ``bias`` attribute (colour, place) is used, one-hot encoded.

For x (n, p), y (n, q) with distances A_ij = |x_i − x_j|, B_ij = |y_i − y_j|, row sums
a_i = Σ_j A_ij, b_i and totals a = Σ_i a_i, b (exponent 1):

- V-statistic (biased; ``dcor.distance_correlation_sqr``), Székely et al. 2007 eq. 2.8:
  dCov²(x, y) = Σ A∘B / n² − 2 Σ_i a_i b_i / n³ + a b / n⁴
- U-statistic (bias-corrected; ``dcor.u_distance_correlation_sqr``), Székely & Rizzo 2014
  eq. 3.3 with the U-centring of Prop. 1 expanded:
  Ω(x, y) = [Σ_{i≠j} A∘B − 2 Σ_i a_i b_i / (n − 2) + a b / ((n − 1)(n − 2))] / (n (n − 3))

dcor² = dCov²(x, y) / √|dCov²(x, x) dCov²(y, y)|, and 0 when that denominator is 0 (either
input constant), as in the ``dcor`` package. Everything above is a sum over the n × n distance
matrices, so one pass over blocks of rows gives all of it: memory is one block of rows
(never n × n, never n × n × d) and n = 100,000 fits on one GPU. Sums are float64.
"""

from __future__ import annotations

from typing import Any

import torch

from benchmark import EvalView, Metric, register_metric
from benchmark.errors import BenchError
from benchmark.metric import as_labels, as_tensor, check_same_length, warn_undefined

#: at most this many float64 entries per block of a distance matrix (128 MiB; 512 MiB on GPU)
BLOCK_ELEMENTS = {"cpu": 2**24, "cuda": 2**26}
#: inputs with at most this many columns get exact |x_i − x_j| instead of the Gram formula
EXACT_DIMS = 8


def _as_samples(x: Any, name: str, device: torch.device | None) -> torch.Tensor:
    t = as_tensor(x, name=name, device=device)
    if t.ndim == 1:
        t = t[:, None]
    if t.ndim != 2:
        raise BenchError(f"{name} must be (n,) or (n, d), got shape {tuple(t.shape)}")
    t = t.to(torch.float64)
    return t - t.mean(dim=0)  # distances are translation invariant; centring keeps them exact


def _distances(rows: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] <= EXACT_DIMS:
        return (rows[:, None, :] - x[None, :, :]).square().sum(-1).sqrt()
    return torch.cdist(rows, x, compute_mode="use_mm_for_euclid_dist")


def distance_sums(
    x: torch.Tensor, y: torch.Tensor, block_size: int | None = None
) -> dict[str, Any]:
    """One blocked pass: Σ A∘B, Σ A∘A, Σ B∘B and the row sums of A and B (float64)."""
    n = len(x)
    if block_size is None:
        budget = BLOCK_ELEMENTS["cuda" if x.is_cuda else "cpu"]
        width = max([1, *(d for d in (x.shape[1], y.shape[1]) if d <= EXACT_DIMS)])
        block_size = max(1, budget // (n * width))
    ab = aa = bb = torch.zeros((), dtype=torch.float64, device=x.device)
    row_a = torch.empty(n, dtype=torch.float64, device=x.device)
    row_b = torch.empty_like(row_a)
    for start in range(0, n, block_size):
        stop = min(n, start + block_size)
        a = _distances(x[start:stop], x)
        b = _distances(y[start:stop], y)
        diag = torch.arange(stop - start, device=x.device)
        a[diag, diag + start] = 0.0  # the Gram formula leaves rounding noise on the diagonal
        b[diag, diag + start] = 0.0
        ab = ab + (a * b).sum()
        aa = aa + a.square().sum()
        bb = bb + b.square().sum()
        row_a[start:stop] = a.sum(dim=1)
        row_b[start:stop] = b.sum(dim=1)
    return {"ab": ab, "aa": aa, "bb": bb, "row_a": row_a, "row_b": row_b}


def _dcov(s_xy: torch.Tensor, rx: torch.Tensor, ry: torch.Tensor, n: int, unbiased: bool):
    if unbiased:
        inner = s_xy - 2 * (rx * ry).sum() / (n - 2) + rx.sum() * ry.sum() / ((n - 1) * (n - 2))
        return inner / (n * (n - 3))
    return s_xy / n**2 - 2 * (rx * ry).sum() / n**3 + rx.sum() * ry.sum() / n**4


def dcor2(x: Any, y: Any, unbiased: bool = False, block_size: int | None = None) -> float:
    """Squared distance correlation of samples ``x`` (n, p) and ``y`` (n, q) (1-D = (n, 1)).

    ``unbiased=False``: V-statistic (``dcor.distance_correlation_sqr``); ``True``: the
    bias-corrected U-statistic (``dcor.u_distance_correlation_sqr``; needs n > 3, may be
    slightly negative). Either input constant gives 0.0. Runs in float64 on the device of the
    first tensor input; inputs with more than 8 columns get their distances from (centred)
    float64 matrix products, tested against ``dcor`` to 1e-10 on the CPU.
    ``block_size``: rows per block (default: from a memory budget).
    """
    device = next((t.device for t in (x, y) if isinstance(t, torch.Tensor)), None)
    xs, ys = _as_samples(x, "x", device), _as_samples(y, "y", device)
    n = check_same_length(x=xs, y=ys)
    if unbiased and n <= 3:
        raise BenchError(f"the U-statistic dcor² needs more than 3 samples, got {n}")
    if bool((xs == xs[0]).all()) or bool((ys == ys[0]).all()):
        return 0.0
    s = distance_sums(xs, ys, block_size)
    ra, rb = s["row_a"], s["row_b"]
    xy = _dcov(s["ab"], ra, rb, n, unbiased)
    xx = _dcov(s["aa"], ra, ra, n, unbiased)
    yy = _dcov(s["bb"], rb, rb, n, unbiased)
    denominator = (xx * yy).abs().sqrt()
    if float(denominator) == 0.0:
        return 0.0
    return float(xy / denominator)


def _dcor2_per_class(
    features: Any, confounder: Any, labels: Any, min_samples: int = 4
) -> dict[str, Any]:
    f = as_tensor(features, name="features")
    c = as_tensor(confounder, name="confounder", device=f.device)
    y = as_labels(labels, device=f.device)
    check_same_length(features=f, confounder=c, labels=y)
    per_class: dict[int, float] = {}
    counts: dict[int, int] = {}
    for k in torch.unique(y).tolist():
        sel = y == k
        counts[int(k)] = int(sel.sum())
        if counts[int(k)] >= max(4, min_samples):
            per_class[int(k)] = dcor2(f[sel], c[sel], unbiased=True)
    values = list(per_class.values())
    if not values:
        need = max(4, min_samples)
        reason = f"no class has the {need} samples the U-statistic needs"
        return {
            "mean": float("nan"),
            "per_class": {},
            "counts": counts,
            "undefined": {"dcor2": reason},
        }
    return {"mean": sum(values) / len(values), "per_class": per_class, "counts": counts}


def dcor2_per_class(
    features: Any, confounder: Any, labels: Any, min_samples: int = 4
) -> dict[str, Any]:
    """Metadata Normalization's dcor²: U-statistic within each class, mean over classes.

    ``features`` (n, p), ``confounder`` (n,) or (n, q), ``labels`` class indices (n,) or an
    integer (n, 1) column. Classes with fewer than ``min_samples`` (4, the U-statistic's
    minimum) are skipped. Returns ``{"mean", "per_class": {c: value}, "counts": {c: n}}``;
    when no class is left, ``mean`` is NaN, ``"undefined"`` gives the reason and an
    ``UndefinedMetricWarning`` is issued.
    """
    r = _dcor2_per_class(features, confounder, labels, min_samples)
    warn_undefined(r.get("undefined", {}))
    return r


#: attributes the metric scores, in order of preference: a float ``confounder`` (Metadata
#: Normalization's cf1) or the categorical ``bias`` attribute of the other bias datasets
ATTRIBUTES = ("confounder", "bias")


def encode_attribute(a: Any) -> tuple[torch.Tensor, str]:
    """The attribute as dcor² samples: a float attribute as it is (n,) or (n, q); an integer
    or bool (categorical) one as its one-hot encoding (n, number of distinct values), so
    that two samples are at distance 0 (same value) or √2 (different values)."""
    t = as_tensor(a, name="attribute")
    if t.is_floating_point():
        return t, "value"
    if t.ndim != 1:
        raise BenchError(f"a categorical attribute must be (n,), got shape {tuple(t.shape)}")
    _, inverse = torch.unique(t.long(), return_inverse=True)
    return torch.nn.functional.one_hot(inverse).to(torch.float64), "one-hot"


@register_metric("dcor")
class DistanceCorrelation(Metric):
    """dcor² (U-statistic) of penultimate features vs the bias attribute, per class (MDN):
    the float ``confounder`` when the dataset has one, else the ``bias`` attribute one-hot."""

    requires = ("features", "labels")
    higher_is_better = {"dcor2": False}
    tracks = ("bias",)
    convention = (
        "U-statistic dcor², exponent 1, features vs the bias attribute within each class, mean "
        "over classes; attribute: confounder (float) if present, else bias (categorical, "
        "one-hot); named in the details"
    )
    functions = {"dcor2": dcor2, "dcor2_per_class": dcor2_per_class}

    @staticmethod
    def attribute(view: EvalView) -> str | None:
        return next((a for a in ATTRIBUTES if a in view.attrs), None)

    def applies(self, view: EvalView) -> bool:
        return super().applies(view) and self.attribute(view) is not None

    def _result(self, view: EvalView) -> dict[str, Any]:
        cached = getattr(self, "_cache", None)
        if cached is None or cached[0] is not view:
            name = self.attribute(view)
            assert name is not None
            keep = view.labels >= 0
            attr, encoding = encode_attribute(view.attrs[name][keep])
            result = _dcor2_per_class(view.outputs.features[keep], attr, view.labels[keep])
            result.update(attribute=name, encoding=encoding)
            self._cache = (view, result)
        return self._cache[1]

    def compute(self, view: EvalView) -> dict[str, float]:
        return {"dcor2": self._result(view)["mean"]}

    def details(self, view: EvalView) -> dict[str, Any]:
        r = self._result(view)
        out = {
            "attribute": r["attribute"],
            "encoding": r["encoding"],
            "per_class": r["per_class"],
            "counts": r["counts"],
        }
        return {**out, "undefined": r["undefined"]} if "undefined" in r else out
