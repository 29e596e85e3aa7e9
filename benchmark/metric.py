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
        t = torch.as_tensor(np.asarray(x))
    if device is not None:
        t = t.to(device)
    if dtype is not None:
        t = t.to(dtype)
    if t.is_floating_point() and not torch.isfinite(t).all():
        raise BenchError(f"{name} contains NaN or infinite values")
    return t


def as_labels(
    x: Any, *, name: str = "labels", device: torch.device | str | None = None
) -> torch.Tensor:
    """Integer class indices (N,); a 2-D input is read as scores and arg-maxed."""
    t = as_tensor(x, name=name, device=device)
    if t.ndim == 2:
        t = t.argmax(dim=1)
    if t.ndim != 1:
        raise BenchError(f"{name} must be 1-D class indices, got shape {tuple(t.shape)}")
    if t.is_floating_point() and not torch.equal(t, t.round()):
        raise BenchError(f"{name} must hold integer class indices")
    return t.long()


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
