"""Empirical risk minimisation: the shared backbone with a linear head trained with plain
softmax cross-entropy (Vapnik 1992). Every other method is measured against it."""

from __future__ import annotations

from benchmark import Method, register_method
from benchmark.tracks import backbones as _track_backbones  # noqa: F401  (registers them)


@register_method("erm")
class ERM(Method):
    """Cross-entropy training of backbone + linear classifier (the baseline)."""

    paper = "Vapnik, Principles of Risk Minimization for Learning Theory, NeurIPS 1992"
