"""Group up-weighting (UW in Sagawa et al., ICLR 2020; RWG in Idrissi et al., CLeaR 2022):
each group weighted by its inverse training frequency, ``w_g = N / n_g``.

``reweight=sampler`` (default, what both official codes do: group_DRO ``--reweight_groups``,
BalancingGroups ``rwg``): batches drawn with probability ∝ w_g with replacement, N draws per
epoch, plain mean cross-entropy. ``reweight=loss``: uniform batches and the weighted loss
``Σ_i w_g(i) ℓ_i / Σ_i w_g(i)`` (same expected gradient, other minibatch noise). Groups:
the ``groups`` setting (``benchmark.tracks.bias.Groups``; class × aligned by default).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from benchmark import Batch, HParam, register_method
from benchmark.tracks.bias import GroupMethod


@register_method("group-upweight")
class GroupUpweight(GroupMethod):
    """Inverse-group-frequency re-weighting by sampling (default) or by loss weights."""

    paper = "Idrissi et al., Simple data balancing achieves competitive worst-group-accuracy, CLeaR 2022"  # noqa: E501
    hparams = {
        **GroupMethod.hparams,
        "reweight": HParam(
            "sampler",
            help="sampler: draw ∝ 1/n_g with replacement (official codes); loss: weighted CE",
            choices=("sampler", "loss"),
        ),
    }

    def sampled(self, hp: Mapping[str, Any]) -> bool:
        return hp["reweight"] == "sampler"

    def prepare(self, train: Any) -> None:
        assert self.groups is not None
        self.weight_of_group = (len(train) / self.groups.counts.clamp_min(1)).float()

    def loss(self, batch: Batch) -> torch.Tensor:
        losses = F.cross_entropy(self.model(batch.x), batch.y, reduction="none")
        if self.hp.reweight == "sampler":
            return losses.mean()
        w = self.weight_of_group.to(losses.device)[self.batch_groups(batch)]
        return (w * losses).sum() / w.sum()
