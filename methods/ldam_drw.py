"""LDAM-DRW (Cao et al., Learning Imbalanced Datasets with Label-Distribution-Aware Margin
Loss, NeurIPS 2019; official code kaidic/LDAM-DRW).

- Classifier: cosine logits ``z_c = ⟨x/‖x‖, w_c/‖w_c‖⟩`` (the code's ``NormedLinear``).
- LDAM loss (Eq. 10): cross-entropy on ``s·(z − Δ_y e_y)`` with margins ``Δ_c ∝ n_c^{−1/4}``
  (Eq. 12), the largest equal to ``max_margin`` = 0.5, and scale s = 30.
- DRW (deferred re-weighting, §3.3): uniform weights until the re-weighting epoch, then
  class-balanced weights ``(1 − β)/(1 − β^{n_c})`` (β = 0.9999, normalised to sum to C) in
  PyTorch's weighted cross-entropy. The code re-weights at epoch 160 of 200; here at the
  fraction ``drw_at`` = 0.8 of the protocol's epochs (160 of 200 for ``cifar-lt``).
- Outputs: the logits ``s·z`` the loss trains (Eq. 10 without the label's margin, unknown at test
  time), so probabilities, ECE and MSP scores are those of the trained softmax; the argmax, hence
  accuracy, is that of ``z`` as in the official evaluation.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from benchmark import (
    POSITIVE,
    UNIT,
    Batch,
    Classifier,
    HParam,
    Outputs,
    Range,
    Uniform,
    build_backbone,
    register_method,
)
from benchmark.tracks.longtail import (
    LongTailMethod,
    NormedLinear,
    effective_number_weights,
    ldam_loss,
    ldam_margins,
)


@register_method("ldam-drw")
class LDAMDRW(LongTailMethod):
    """Label-distribution-aware margins + deferred class-balanced re-weighting (Cao et al. 2019)."""

    paper = "Cao et al., Learning Imbalanced Datasets with Label-Distribution-Aware Margin Loss, NeurIPS 2019"  # noqa: E501
    hparams = {
        "max_margin": HParam(0.5, Uniform(0.1, 1.0), "margin of the rarest class", valid=POSITIVE),
        "scale": HParam(30.0, Uniform(10.0, 50.0), "logit scale s", valid=POSITIVE),
        "drw_at": HParam(
            0.8, Uniform(0.5, 0.9), "re-weighting starts at this fraction of epochs", valid=UNIT
        ),
        "beta": HParam(
            0.9999, help="effective-number β of the DRW weights", valid=Range(0, 1, open_high=True)
        ),
    }

    def build(self) -> nn.Module:
        backbone = build_backbone(self.hp.backbone, self.info.input_shape)
        model = Classifier(backbone, NormedLinear(backbone.feature_dim, self.info.num_classes))
        # per-class weights as a buffer: changed in place at the DRW epoch (CUDA-graph safe)
        model.register_buffer("class_weight", torch.ones(self.info.num_classes))
        return model

    @functools.cached_property
    def margins(self) -> torch.Tensor:
        return ldam_margins(self.counts, self.hp.max_margin)

    def on_epoch_start(self, epoch: int) -> None:
        if epoch >= round(self.hp.drw_at * self.hp.epochs):  # deferred re-weighting
            self.model.class_weight.copy_(effective_number_weights(self.counts, self.hp.beta))
        else:
            self.model.class_weight.fill_(1.0)

    def loss(self, batch: Batch) -> torch.Tensor:
        weight = self.model.class_weight
        return ldam_loss(self.model(batch.x), batch.y, self.margins, self.hp.scale, weight)

    def predict_batch(self, x: torch.Tensor) -> Outputs:
        out = super().predict_batch(x)
        out.logits = self.hp.scale * out.logits.float()
        out.ood_score = torch.softmax(out.logits, dim=1).max(dim=1).values
        return out
