"""Post-hoc logit adjustment (Menon et al., Long-Tail Learning via Logit Adjustment, ICLR 2021,
Eq. 3): predict ``argmax_c z_c − τ log π_c`` with the ``ce`` model's logits ``z`` and the
training label frequencies π. Training-free: it reuses the cached ``ce`` checkpoint, and τ is a
test-time knob (default 1, the Bayes-optimal choice for the balanced error when ``z`` estimates
log p(y|x)). The loss form is the plugin ``logit-adjust-loss``.
"""

from __future__ import annotations

import torch

from benchmark import NON_NEGATIVE, HParam, Method, Outputs, Uniform, register_method
from benchmark.tracks.longtail import log_prior


@register_method("logit-adjust")
class LogitAdjust(Method):
    """ce logits minus τ·log prior, post hoc (Menon et al. 2021)."""

    paper = "Menon et al., Long-Tail Learning via Logit Adjustment, ICLR 2021"
    base = "ce"
    tracks = ("longtail",)
    hparams = {
        "tau": HParam(
            1.0, Uniform(0.0, 2.0), "scale τ of the log-prior subtraction", True, valid=NON_NEGATIVE
        ),
    }

    def predict_batch(self, x: torch.Tensor) -> Outputs:
        out = super().predict_batch(x)
        prior = log_prior(self.info.train_counts).to(out.logits.device)
        out.logits = out.logits.float() - self.hp.tau * prior
        out.ood_score = torch.softmax(out.logits, dim=1).max(dim=1).values
        return out
