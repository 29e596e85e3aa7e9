"""Example of the ``sampler`` training option and ``sample_weights`` (group up-weighting,
GroupDRO's group-balanced sampling): the groups of every drawn batch are recorded."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmark import Batch, HParam, Split, register_method
from benchmark.contracts import TRAINING_OPTIONS
from benchmark.method import Method


@register_method("ex-group-sampler")
class GroupSampler(Method):
    """Cross-entropy weighted per sample, batches drawn by ``sampler`` (group-balanced)."""

    tracks = ("bias",)
    requires = ("group",)
    hparams = {
        "sampler": TRAINING_OPTIONS["sampler"],
        "upweight": HParam(-1, help="the one training index with a non-zero weight (-1: none)"),
    }
    protocol_defaults = {"sampler": "group-balanced"}
    drawn: list[torch.Tensor] = []
    weighted: list[bool] = []

    def sample_weights(self, train: Split) -> torch.Tensor | None:
        if self.hp.upweight < 0:
            return None
        w = torch.zeros(len(train))
        w[self.hp.upweight] = 1.0
        return w

    def loss(self, batch: Batch) -> torch.Tensor:
        type(self).drawn.append(batch.index.cpu())
        type(self).weighted.append(batch.weight is not None)
        losses = F.cross_entropy(self.model(batch.x), batch.y, reduction="none")
        return losses.mean() if batch.weight is None else (losses * batch.weight).mean()
