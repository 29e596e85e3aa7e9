"""Logit-adjusted loss (Menon et al., Long-Tail Learning via Logit Adjustment, ICLR 2021,
Eq. 10): cross-entropy on ``z_c + τ log π_c`` with π the training label frequencies; plain ``z``
at test time. τ = 1 (the paper's default) makes it Balanced Softmax. The post-hoc form is the
separate plugin ``logit-adjust``. Bias-free linear classifier as ``ce``.
"""

from __future__ import annotations

import torch

from benchmark import NON_NEGATIVE, Batch, HParam, Uniform, register_method
from benchmark.tracks.longtail import LongTailMethod, logit_adjusted_loss


@register_method("logit-adjust-loss")
class LogitAdjustLoss(LongTailMethod):
    """Cross-entropy on logits + τ·log prior (Menon et al. 2021, loss form)."""

    paper = "Menon et al., Long-Tail Learning via Logit Adjustment, ICLR 2021"
    hparams = {
        "tau": HParam(
            1.0, Uniform(0.5, 2.0), "scale τ of the log-prior adjustment", valid=NON_NEGATIVE
        )
    }

    def loss(self, batch: Batch) -> torch.Tensor:
        return logit_adjusted_loss(self.model(batch.x), batch.y, self.counts, tau=self.hp.tau)
