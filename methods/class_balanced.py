"""Class-balanced loss (Cui et al., Class-Balanced Loss Based on Effective Number of Samples,
CVPR 2019, Eq. 4 and §4).

Each sample's loss is weighted by ``w_y ∝ (1 − β)/(1 − β^{n_y})``, the inverse of the class's
effective number of samples, normalised so that ``Σ_c w_c = C``; the batch loss is the mean of
the weighted per-sample losses. β = 0.9999 (the paper's CIFAR-LT choice); the per-sample loss
is softmax cross-entropy, or softmax focal with γ > 0 (``gamma``, default 0).
"""

from __future__ import annotations

import functools

import torch

from benchmark import NON_NEGATIVE, Batch, HParam, Range, Uniform, register_method
from benchmark.tracks.longtail import LongTailMethod, effective_number_weights, focal_loss


@register_method("class-balanced")
class ClassBalanced(LongTailMethod):
    """Loss re-weighted by the inverse effective number of samples (Cui et al. 2019)."""

    paper = "Cui et al., Class-Balanced Loss Based on Effective Number of Samples, CVPR 2019"
    hparams = {
        "beta": HParam(
            0.9999,
            Uniform(0.9, 0.99999),
            "effective-number β (0 = no re-weighting)",
            valid=Range(0, 1, open_high=True),
        ),
        "gamma": HParam(
            0.0,
            Uniform(0.0, 2.0),
            "focal γ of the per-sample loss (0 = softmax CE)",
            valid=NON_NEGATIVE,
        ),
    }

    @functools.cached_property
    def weight(self) -> torch.Tensor:
        return effective_number_weights(self.counts, self.hp.beta)

    def loss(self, batch: Batch) -> torch.Tensor:
        return focal_loss(self.model(batch.x), batch.y, self.hp.gamma, self.weight)
