"""Focal loss (Lin et al., Focal Loss for Dense Object Detection, ICCV 2017, Eq. 5).

``FL(p_y) = −(1 − p_y)^γ log p_y`` on softmax probabilities: well-classified (mostly head-class)
samples are down-weighted. Default γ = 1, the softmax focal baseline of the LDAM-DRW code
(Cao et al. 2019) that the long-tail papers compare against; Lin et al. use γ = 2 with sigmoids
for detection. Bias-free linear classifier as ``ce``.
"""

from __future__ import annotations

import torch

from benchmark import NON_NEGATIVE, Batch, HParam, Uniform, register_method
from benchmark.tracks.longtail import LongTailMethod, focal_loss


@register_method("focal")
class Focal(LongTailMethod):
    """Softmax focal loss −(1 − p_y)^γ log p_y (Lin et al. 2017)."""

    paper = "Lin et al., Focal Loss for Dense Object Detection, ICCV 2017"
    hparams = {
        "gamma": HParam(1.0, Uniform(0.5, 3.0), "focusing parameter γ (0 = CE)", valid=NON_NEGATIVE)
    }

    def loss(self, batch: Batch) -> torch.Tensor:
        return focal_loss(self.model(batch.x), batch.y, self.hp.gamma)
