"""GroupDRO (Sagawa, Koh, Hashimoto, Liang, Distributionally Robust Neural Networks for Group
Shifts, ICLR 2020; kohpangwei/group_DRO ``loss.py compute_robust_loss``).

Online algorithm: q_g = 1/G at the start, kept across epochs; per batch the group mean losses
L̂_g (0 for a group absent from the batch), ``q_g ← q_g · exp(η · (L̂_g + C/√n_g))``,
``q ← q / Σ q`` (detached), and the training loss ``Σ_g q_g L̂_g``. η = 0.01 (the code's
``--robust_step_size``; not ``--gamma``); the generalisation adjustment C (0 = off, as the
README commands) uses training counts n_g. As the README commands (``--reweight_groups
--robust``), batches are group-balanced by sampling (``balanced=false`` for uniform).
The final q is stored in the record (``details.method.q``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from benchmark import NON_NEGATIVE, POSITIVE, Batch, HParam, LogUniform, register_method
from benchmark.tracks.bias import GroupMethod, group_means, groupdro_update


@register_method("groupdro")
class GroupDRO(GroupMethod):
    """Online worst-group minimisation with exponentiated-gradient group weights."""

    paper = "Sagawa et al., Distributionally Robust Neural Networks for Group Shifts, ICLR 2020"
    hparams = {
        **GroupMethod.hparams,
        "eta": HParam(0.01, LogUniform(1e-3, 0.1), "group-weight step size η", valid=POSITIVE),
        "adjustment": HParam(
            0.0,
            help="generalisation adjustment C (C/√n_g added to group losses)",
            valid=NON_NEGATIVE,
        ),
        "balanced": HParam(True, help="group-balanced sampling (the README commands)"),
    }

    def sampled(self, hp: Mapping[str, Any]) -> bool:
        return bool(hp["balanced"])

    def prepare(self, train: Any) -> None:
        assert self.groups is not None
        g = self.groups.num_groups
        self.q = torch.full((g,), 1.0 / g, device=self.device)
        self.adjust = None
        if self.hp.adjustment > 0:
            n = self.groups.counts.clamp_min(1).to(self.device)
            self.adjust = (self.hp.adjustment / n.sqrt()).float()

    def loss(self, batch: Batch) -> torch.Tensor:
        assert self.groups is not None
        losses = F.cross_entropy(self.model(batch.x).float(), batch.y, reduction="none")
        per_group = group_means(losses, self.batch_groups(batch), self.groups.num_groups)
        self.q = groupdro_update(self.q, per_group, self.hp.eta, self.adjust)
        return (self.q * per_group).sum()

    def summary(self) -> dict[str, Any]:
        out = super().summary()
        if hasattr(self, "q"):
            out["q"] = [round(float(v), 6) for v in self.q]
        return out
