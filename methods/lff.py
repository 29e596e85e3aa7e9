"""Learning from Failure, LfF (Nam et al., Learning from Failure: Training Debiased Classifier
from Biased Classifier, NeurIPS 2020; alinlab/LfF ``train.py``).

Two networks of the same architecture are trained together from scratch: a biased f_B with
generalised cross-entropy (q = 0.7), which amplifies the easy (bias-aligned) cue, and the
debiased f_D with per-sample weights ``W_i = L̃_B,i / (L̃_B,i + L̃_D,i + 1e-8)``. L̄ are
per-sample moving averages of each model's CE (first visit: the loss, then
``L̄ ← α L̄ + (1 − α) ℓ``, α = 0.7 as ``train.py`` passes), each divided by the maximum over the
training samples of the same class (``L̃``). Step loss ``mean GCE(f_B) + mean W·CE(f_D)``, one
backward, one Adam over both models (per-parameter Adam equals the code's two optimisers).
Predictions, features and scores are f_D's. No group labels are used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmark import (
    Batch,
    Classifier,
    HParam,
    Method,
    Range,
    Split,
    Trainer,
    build_backbone,
    register_method,
)
from benchmark.tracks.bias import generalized_ce


class TwoModels(nn.Module):
    """The debiased model (``forward``, ``forward_features``, ``backbone``, ``head``) with the
    biased one beside it (``biased``)."""

    def __init__(self, debiased: Classifier, biased: Classifier) -> None:
        super().__init__()
        self.debiased, self.biased = debiased, biased
        self.backbone, self.head = debiased.backbone, debiased.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.debiased(x)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.debiased.forward_features(x)


@register_method("lff")
class LfF(Method):
    """A GCE-trained biased model re-weights the debiased model's CE by relative difficulty."""

    paper = "Nam et al., Learning from Failure: Training Debiased Classifier from Biased Classifier, NeurIPS 2020"  # noqa: E501
    tracks = ("bias",)
    hparams = {
        "q": HParam(0.7, help="GCE exponent q", valid=Range(0, 1, open_low=True)),
        "ema": HParam(0.7, help="per-sample loss moving-average factor α",
                      valid=Range(0, 1, open_high=True)),
    }  # fmt: skip

    def build(self) -> nn.Module:
        def one() -> Classifier:
            bb = build_backbone(self.hp.backbone, self.info.input_shape)
            return Classifier(bb, nn.Linear(bb.feature_dim, self.info.num_classes))

        return TwoModels(one(), one())

    def fit(self, train: Split, trainer: Trainer) -> None:
        n = len(train)
        self.labels = train.labels.to(self.device).long()
        self.ema_b = torch.zeros(n, device=self.device)
        self.ema_d = torch.zeros(n, device=self.device)
        self.seen = torch.zeros(n, dtype=torch.bool, device=self.device)
        trainer.fit(self, train)

    def _update(self, ema: torch.Tensor, idx: torch.Tensor, loss: torch.Tensor) -> None:
        a = self.hp.ema
        old = ema[idx]
        ema[idx] = torch.where(self.seen[idx], a * old + (1 - a) * loss, loss)

    def _normalised(self, ema: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        c = self.info.num_classes
        peak = torch.zeros(c, device=ema.device).scatter_reduce(
            0, self.labels, ema, reduce="amax", include_self=True
        )
        return ema[idx] / peak[self.labels[idx]].clamp_min(1e-8)

    def loss(self, batch: Batch) -> torch.Tensor:
        zb = self.model.biased(batch.x).float()
        zd = self.model.debiased(batch.x).float()
        ce_b = F.cross_entropy(zb, batch.y, reduction="none")
        ce_d = F.cross_entropy(zd, batch.y, reduction="none")
        idx = batch.index.to(self.device)
        with torch.no_grad():
            self._update(self.ema_b, idx, ce_b.detach())
            self._update(self.ema_d, idx, ce_d.detach())
            self.seen[idx] = True
            lb, ld = self._normalised(self.ema_b, idx), self._normalised(self.ema_d, idx)
            w = lb / (lb + ld + 1e-8)
        return generalized_ce(zb, batch.y, self.hp.q).mean() + (w * ce_d).mean()
