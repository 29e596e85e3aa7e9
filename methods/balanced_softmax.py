"""Balanced Softmax (Ren et al., Balanced Meta-Softmax for Long-Tailed Visual Recognition,
NeurIPS 2020, Eq. 4).

Training: cross-entropy on ``z_c + log n_c`` (the softmax is re-weighted by the training class
frequencies, so the model learns the logits of a balanced label distribution); testing: plain
``z``. This is the loss without the paper's meta-sampler. It equals ``logit-adjust-loss`` at
τ = 1. Bias-free linear classifier as ``ce``.
"""

from __future__ import annotations

import torch

from benchmark import Batch, register_method
from benchmark.tracks.longtail import LongTailMethod, logit_adjusted_loss


@register_method("balanced-softmax")
class BalancedSoftmax(LongTailMethod):
    """Cross-entropy on logits + log class frequency; plain logits to test (Ren et al. 2020)."""

    paper = "Ren et al., Balanced Meta-Softmax for Long-Tailed Visual Recognition, NeurIPS 2020"

    def loss(self, batch: Batch) -> torch.Tensor:
        return logit_adjusted_loss(self.model(batch.x), batch.y, self.counts, tau=1.0)
