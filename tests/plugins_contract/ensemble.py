"""Example of ``base_seeds``: a deep ensemble whose members are the base trained with seeds
s, s+1, ..., s+M-1 (each trained once, cached, reused by other runs)."""

from __future__ import annotations

import torch

from benchmark import HParam, Outputs, register_method
from benchmark.method import Method


@register_method("ex-ensemble")
class Ensemble(Method):
    """Mean softmax of ``members`` base models."""

    base = "erm"
    hparams = {"members": HParam(2, help="ensemble size M")}

    def base_seeds(self, seed: int) -> list[int]:
        return [seed + i for i in range(self.hp.members)]

    def adopt_members(self, members: list[Method]) -> None:
        self.members = [m.model for m in members]

    def predict_batch(self, x: torch.Tensor) -> Outputs:
        probs = torch.stack([torch.softmax(m(x).float(), 1) for m in self.members]).mean(0)
        return Outputs(logits=probs.log(), probs_=probs, ood_score=probs.max(1).values,
                       ood_score_kind="ensemble-msp")  # fmt: skip
