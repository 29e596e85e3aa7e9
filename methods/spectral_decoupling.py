"""Spectral Decoupling (Pezeshki et al., Gradient Starvation: A Learning Proclivity in Neural
Networks, NeurIPS 2021; mohammadpz/Gradient_Starvation).

Loss: ``CE(ŷ, y) + (λ/2)·mean_i ‖ŷ_i‖²`` on the logits ŷ (the paper's form; the code's
penalty is ``mean(ŷ²)`` without ½ and rescales the whole loss after step 450 in its binary
Colored-MNIST run, which has no multi-class counterpart). λ = 0.01 here: a default for the
10-class built-ins, not a published value (tune it with ``bench sweep``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmark import NON_NEGATIVE, Batch, HParam, LogUniform, Method, register_method


@register_method("spectral-decoupling")
class SpectralDecoupling(Method):
    """Cross-entropy plus an L2 penalty on the logits."""

    paper = "Pezeshki et al., Gradient Starvation: A Learning Proclivity in Neural Networks, NeurIPS 2021"  # noqa: E501
    tracks = ("bias",)
    graph_safe = True
    hparams = {
        "sd_lambda": HParam(
            0.01, LogUniform(1e-4, 1.0), "λ of the logit penalty (λ/2)‖ŷ‖²", valid=NON_NEGATIVE
        )
    }

    def loss(self, batch: Batch) -> torch.Tensor:
        z = self.model(batch.x).float()
        penalty = 0.5 * self.hp.sd_lambda * z.square().sum(dim=1).mean()
        return F.cross_entropy(z, batch.y) + penalty
