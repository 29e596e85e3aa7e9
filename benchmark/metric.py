"""The metric contract: a function of a method's outputs and a split's attributes.

A metric plugin is a thin class around plain functions (the torchmetrics habit): the class
declares what it needs (``requires``), the keys it reports with their direction
(``higher_is_better``), and the tracks it applies to; the functions are what users call on
their own predictions through ``benchmark.metric_fn(name)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from benchmark.errors import BenchError, UnknownNameError
from benchmark.outputs import Outputs
from benchmark.registry import Registry


@dataclass
class EvalView:
    """Everything a metric may read for one evaluated split."""

    split: str
    labels: torch.Tensor
    outputs: Outputs
    attrs: dict[str, torch.Tensor] = field(default_factory=dict)
    train_counts: torch.Tensor | None = None
    num_classes: int = 0
    track: str = ""
    #: the split's raw inputs (uint8 or float, N×C×H×W, on the CPU) — for perturbation metrics;
    #: images on disk are an ``ImageFiles``: read rows with ``benchmark.imagefiles.take``
    inputs: Any = None
    #: maps raw inputs scaled to [0, 1] to normalised model inputs (the dataset's mean/std)
    normalise: Callable[[torch.Tensor], torch.Tensor] | None = None
    #: maps a batch of normalised inputs to class probabilities (N, C) with the trained model
    model_probs: Callable[[torch.Tensor], torch.Tensor] | None = None

    def tracks(self) -> set[str]:
        """The tracks this split serves: the dataset's own and those of the attributes it
        provides (``benchmark.dataset.ATTR_TRACKS``: masks -> explain, groups -> bias, ...)."""
        from benchmark.dataset import provided_tracks

        return provided_tracks(self.track, self.attrs)

    def available(self) -> set[str]:
        have = self.outputs.available() | {f"attr:{a}" for a in self.attrs} | {"labels"}
        if self.train_counts is not None:
            have.add("train_counts")
        if self.inputs is not None:
            have.add("inputs")
        if self.model_probs is not None and self.normalise is not None:
            have.add("model")
        return have


class Metric:
    """Base class of metric plugins.

    ``requires``: output names (``logits``, ``probs``, ``preds``, ``features``, ``ood_score``,
    ``saliency``), ``labels``, ``train_counts``, ``attr:<name>`` for split attributes, and
    ``inputs`` / ``model`` for metrics that perturb images and query the trained model.
    ``higher_is_better``: the keys ``compute`` returns, each with its direction.
    ``tracks``: the tracks this metric belongs to (None: every track); it applies to a split
    that serves one of them (``EvalView.tracks``: the dataset's own track or one whose
    attributes it provides).
    ``functions``: the plain functions exposed through ``benchmark.metric_fn``.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    requires: ClassVar[tuple[str, ...]] = ()
    higher_is_better: ClassVar[Mapping[str, bool]] = {}
    tracks: ClassVar[tuple[str, ...] | None] = None
    convention: ClassVar[str] = ""
    functions: ClassVar[Mapping[str, Callable[..., Any]]] = {}

    def applies(self, view: EvalView) -> bool:
        if self.tracks is not None and not set(self.tracks) & view.tracks():
            return False
        return set(self.requires) <= view.available()

    def compute(self, view: EvalView) -> dict[str, float]:
        raise NotImplementedError

    def details(self, view: EvalView) -> dict[str, Any]:
        """Optional non-scalar results (per-group tables, per-bin tables, curves)."""
        return {}


METRICS: Registry[type[Metric]] = Registry("metric", Metric)
register_metric = METRICS.register


def metric_fn(name: str) -> Callable[..., Any]:
    """The plain function ``name`` (e.g. ``"balanced_accuracy"``) exposed by a metric plugin."""
    from benchmark.plugins import load_plugins

    load_plugins()
    functions: dict[str, Callable[..., Any]] = {}
    for _, cls in METRICS.items():
        functions.update(cls.functions)
    key = name.replace("-", "_")
    if key not in functions:
        raise UnknownNameError("metric function", name, functions)
    return functions[key]


def direction(key: str) -> bool | None:
    """Whether a reported key is higher-is-better (None when no metric declares it); keys a
    method reports itself (``Method.reports``) count too."""
    for _, cls in METRICS.items():
        if key in cls.higher_is_better:
            return cls.higher_is_better[key]
    from benchmark.method import METHODS

    for _, mcls in METHODS.items():
        if key in mcls.reports:
            return mcls.reports[key]
    return None


# -- input handling shared by the functional metrics ----------------------------------------


def as_tensor(
    x: Any, *, name: str, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> torch.Tensor:
    """A torch tensor from a tensor, numpy array or sequence; rejects NaN and inf."""
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        a = np.asarray(x)
        if a.dtype.kind not in "biuf":  # strings, None, objects: not numbers
            raise BenchError(f"{name} must be numbers, got {a.dtype.name} values like {x!r:.40}")
        t = torch.as_tensor(a)
    if device is not None:
        t = t.to(device)
    if dtype is not None:
        t = t.to(dtype)
    if t.is_floating_point() and not torch.isfinite(t).all():
        raise BenchError(f"{name} contains NaN or infinite values")
    return t


def as_labels(
    x: Any,
    *,
    name: str = "labels",
    device: torch.device | str | None = None,
    scores: bool = False,
    what: str = "class indices",
) -> torch.Tensor:
    """Integer class indices (N,) as int64.

    Accepted: indices (N,) (integers, or floats holding integers); an *integer* (N, 1) column
    (ravelled); with ``scores=True`` also scores or probabilities (N, C), C >= 2 (arg-maxed).
    Errors (``BenchError``): a float (N, 1) column (a one-logit binary model or a column of
    indices: ambiguous), (N, C) scores where only indices are meant, non-integer values, NaN,
    other shapes. ``what`` names the values in the messages.
    """
    t = as_tensor(x, name=name, device=device)
    if t.ndim == 2 and t.shape[1] == 1:
        if t.is_floating_point():
            raise BenchError(
                f"{name} is a float (N, 1) column, which is ambiguous: pass {what} as integers "
                "(N,) or (N, 1), or scores (N, 2) for a binary model (e.g. [1 - p, p])"
            )
        t = t[:, 0]
    elif t.ndim == 2 and scores and t.shape[1] >= 2:
        t = t.argmax(dim=1)
    if t.ndim != 1:
        shapes = "(N,) or an integer (N, 1) column" + (", or scores (N, C)" if scores else "")
        raise BenchError(f"{name} must be {what} {shapes}, got shape {tuple(t.shape)}")
    if t.is_floating_point() and not torch.equal(t, t.round()):
        raise BenchError(f"{name} must hold integer {what}")
    return t.long()


#: how far a row of probabilities may sum from 1, by dtype (sums are taken in float64): 1e-3
#: for float32/float64, 4 machine epsilons for float16 (3.9e-3) and bfloat16 (3.1e-2), whose
#: softmax rows miss 1 by up to ~eps/2 after rounding each entry (2.4e-3 seen in bfloat16)
LOW_PRECISION = (torch.float16, torch.bfloat16)


def probability_tolerance(dtype: torch.dtype) -> float:
    """The tolerance on row sums of probabilities stored in ``dtype`` (see above)."""
    if dtype in LOW_PRECISION:
        return 4 * torch.finfo(dtype).eps
    return 1e-3


def check_probabilities(p: torch.Tensor, *, name: str = "probs") -> None:
    """Reject anything but a float (N, C >= 2) array of probability rows: NaN or inf, negative
    entries, rows whose float64 sum misses 1 by more than ``probability_tolerance(dtype)``."""
    if p.ndim != 2 or not p.is_floating_point() or p.shape[1] < 2:
        raise BenchError(
            f"{name} must be a float (N, C) array of probabilities with C >= 2 (for a binary "
            f"model pass [1 - p, p]), got {p.dtype} {tuple(p.shape)}"
        )
    if p.numel() == 0:
        return
    sums = torch.sum(p, dim=1, dtype=torch.float64)  # NaN and inf show up here
    # one host read (one device sync on the GPU)
    finite, lowest, worst = torch.stack(
        [torch.isfinite(sums).all().double(), p.amin().double(), (sums - 1).abs().max()]
    ).tolist()
    if not finite:
        raise BenchError(f"{name} contains NaN or infinite values")
    if lowest < 0:
        raise BenchError(f"{name} has negative entries: pass probabilities (softmax), not logits")
    tolerance = probability_tolerance(p.dtype)
    if worst > tolerance:
        raise BenchError(
            f"{name} rows must sum to 1 (within {tolerance:.2g} for {str(p.dtype)[6:]}); one "
            f"is off by {worst:.3g}: pass probabilities (softmax), not logits"
        )


def as_mask(
    x: Any, *, name: str, device: torch.device | str | None = None, soft: bool = False
) -> torch.Tensor:
    """A bool mask from bool, integers or floats in {0, 1}, or uint8 in {0, 255}.

    A uint8 mask whose maximum is 1 is read as {0, 1}; masks of ndim >= 2 (N, ...) are N
    masks, each read on its own scale. ``soft=True`` (object masks) also accepts floats in
    [0, 1] and uint8 in 0..255, thresholded at 0.5 after scaling to [0, 1] (``> 0.5``, i.e.
    uint8 ``> 127``). Anything else (other integers, NaN, floats outside) is a ``BenchError``.
    """
    t = x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if device is not None:
        t = t.to(device)
    if t.dtype == torch.bool or t.numel() == 0:
        return t.bool()
    allowed = "bool, 0/1, or uint8 0/255" + (", or floats in [0, 1]" if soft else "")
    if t.is_floating_point():
        ok = (t >= 0) & (t <= 1) if soft else (t == 0) | (t == 1)  # NaN fails both
        if not bool(ok.all()):
            raise BenchError(f"{name} must be {allowed}; got other float values (or NaN)")
        return t > 0.5
    if t.dtype == torch.uint8:
        peak = t.flatten(1).amax(dim=1) if t.ndim >= 2 else t.amax()
        scale = torch.where(peak <= 1, 1, 255).to(torch.uint8)  # per mask: 0/1 or 0..255
        scale = scale.view(-1, *([1] * (t.ndim - 1))) if t.ndim >= 2 else scale
        if not soft and not bool(((t == 0) | (t == scale)).all()):
            raise BenchError(f"{name} must be {allowed}; a uint8 mask has other values")
        return t.int() * 2 > scale  # t / scale > 0.5
    if not bool(((t == 0) | (t == 1)).all()):
        raise BenchError(f"{name} must be {allowed}; got other integer values")
    return t == 1


class UndefinedMetricWarning(UserWarning):
    """A metric value is undefined (NaN) for these inputs; the message gives the reason."""


def warn_undefined(reasons: Mapping[str, str], *, stacklevel: int = 3) -> None:
    """Report each undefined (NaN) value with its reason, so that none is returned silently
    (the metric plugins write the same reasons into the record's details as ``undefined``)."""
    import warnings

    for key, reason in reasons.items():
        warnings.warn(f"{key} is undefined (NaN): {reason}", UndefinedMetricWarning, stacklevel)


def check_same_length(**tensors: torch.Tensor) -> int:
    lengths = {k: len(v) for k, v in tensors.items()}
    if len(set(lengths.values())) != 1:
        raise BenchError(f"inputs differ in length: {lengths}")
    n = next(iter(lengths.values()))
    if n == 0:
        raise BenchError(f"empty inputs: {', '.join(lengths)}")
    return n


def per_class_accuracy(
    preds: torch.Tensor, labels: torch.Tensor, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(recall per class, number of samples per class); recall is NaN for absent classes."""
    counts = torch.bincount(labels, minlength=num_classes)[:num_classes]
    hits = torch.bincount(labels[preds == labels], minlength=num_classes)[:num_classes]
    recall = hits.double() / counts.double()
    recall[counts == 0] = float("nan")
    return recall, counts
