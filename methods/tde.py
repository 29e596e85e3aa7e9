"""TDE: total-direct-effect inference on the de-confounded model (Tang et al., Long-Tailed
Classification by Keeping the Good and Removing the Bad Momentum Causal Effect, NeurIPS 2020,
§4.2, Eq. 9; ``use_effect`` in the official code).

Post hoc on the ``deconfound`` checkpoint: nothing is trained, α is a test-time knob, so
``bench run --method tde --set alpha=...`` reuses the cached model. With the moving-average
feature d (per head, unit d̂_k) and ``cos_k(x) = ⟨x̂_k, d̂_k⟩``::

    y_c = (τ/K) Σ_k ⟨ x̂_k − α·cos_k(x)·d̂_k , ŵ_{c,k} ⟩

i.e. the causal-norm logit minus the counterfactual effect of the head direction. α: 3.0 for
ImageNet-LT, 1.0 for CIFAR-10-LT, 1.5 for CIFAR-100-LT (official configs; the named protocols
set them). ``alpha_from_val`` applies the README heuristic instead: α = 1 / mean(cos) over the
``val`` split, so that the mean of α·cos is 1. The α used is stored in ``details["method"]``.
"""

from __future__ import annotations

import torch

from benchmark import (
    NON_NEGATIVE,
    Bundle,
    HParam,
    Method,
    Outputs,
    Trainer,
    Uniform,
    register_method,
)
from benchmark.tracks.longtail import extract_features


@register_method("tde")
class TDE(Method):
    """Counterfactual TDE logits on the de-confounded model; α at test time (Tang et al. 2020)."""

    paper = (
        "Tang et al., Long-Tailed Classification by Keeping the Good and Removing the Bad "
        "Momentum Causal Effect, NeurIPS 2020"
    )
    base = "deconfound"
    tracks = ("longtail",)
    hparams = {
        "alpha": HParam(
            1.0, Uniform(0.0, 3.0), "strength α of the subtracted effect", True, valid=NON_NEGATIVE
        ),
        "alpha_from_val": HParam(
            False, help="α = 1/mean(cos) on val (README heuristic)", test_time=True
        ),
    }

    def calibrate(self, bundle: Bundle, trainer: Trainer) -> None:
        self.alpha_ = self.hp.alpha
        if self.hp.alpha_from_val and "val" in bundle.splits:
            features = extract_features(self, bundle.splits["val"], trainer)
            cos = self.model.head.cosine_to_embed(features).mean()
            self.alpha_ = float(1.0 / cos.clamp_min(1e-6))

    def predict_batch(self, x: torch.Tensor) -> Outputs:
        features = self.model.backbone(x)
        logits = self.model.head.tde_logits(features, self.alpha_)
        probs = torch.softmax(logits.float(), dim=1)
        return Outputs(
            logits=logits, features=features, ood_score=probs.max(1).values, ood_score_kind="msp"
        )

    def summary(self) -> dict[str, float]:
        return {"alpha": self.alpha_}
