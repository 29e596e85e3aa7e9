"""Example of ``predict_logits``: an explainer whose ``predict_batch`` (saliency) is costly;
Insertion/Deletion query the model through ``predict_logits`` only. Counts both calls."""

from __future__ import annotations

import torch

from benchmark import Outputs, register_method
from benchmark.method import Method


@register_method("ex-explainer")
class Explainer(Method):
    """Saliency = |input gradient-free proxy|: the mean absolute input over channels."""

    tracks = ("explain",)
    calls = {"predict_batch": 0, "predict_logits": 0}

    def predict_batch(self, x: torch.Tensor) -> Outputs:
        type(self).calls["predict_batch"] += 1
        out = super().predict_batch(x)
        out.saliency = x.abs().mean(1).float()
        return out

    def predict_logits(self, x: torch.Tensor) -> torch.Tensor:
        type(self).calls["predict_logits"] += 1
        return self.model(x)
