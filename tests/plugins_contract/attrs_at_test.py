"""Example of ``predict_attrs``: inference that reads the batch's attributes (Metadata
Normalization removes the confounder at test time). This toy predicts the bias colour."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmark import Outputs, register_method
from benchmark.method import Method


@register_method("ex-attrs")
class AttrsAtTest(Method):
    """Logits plus a large bonus on the class equal to the sample's ``bias`` attribute."""

    tracks = ("bias",)
    requires = ("bias",)
    predict_attrs = ("bias",)

    def predict_batch(
        self, x: torch.Tensor, attrs: dict[str, torch.Tensor] | None = None
    ) -> Outputs:
        out = super().predict_batch(x)
        assert attrs is not None and len(attrs["bias"]) == len(x)
        bonus = 100.0 * F.one_hot(attrs["bias"].long(), self.info.num_classes)
        out.logits = out.logits.float() + bonus
        return out

    def predict_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
