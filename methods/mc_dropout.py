"""MC dropout (Gal & Ghahramani, Dropout as a Bayesian Approximation, ICML 2016;
specs/baselines.md §13).

Backbone → Dropout(p) → linear head, trained with cross-entropy. At test time the backbone runs
once in evaluation mode (BatchNorm frozen) and only the dropout layer stays stochastic:
``samples`` = T masks drawn from ``method.rng`` (seeded by seed and split, so a cached
checkpoint gives the same numbers). Prediction p̄ = (1/T) Σ_t softmax(f_t(x)) (the paper's
probability average, not OpenOOD's logit average); ECE uses p̄. OoD score (``score``): ``msp``
= max_c p̄_c (default) or ``entropy`` = −H[p̄]. Dropout sits on the penultimate features only (the
one dropout layer of a backbone without dropout), so T passes cost T head evaluations.
"""

from __future__ import annotations

import torch
from torch import nn

from benchmark import (
    AT_LEAST_ONE,
    Classifier,
    HParam,
    Outputs,
    Range,
    build_backbone,
    register_method,
)
from benchmark.tracks import backbones as _track_backbones  # noqa: F401  (registers them)
from benchmark.tracks.uncertainty import (
    PROB_SCORES,
    DropoutHead,
    UncertaintyMethod,
    prob_outputs,
)


@register_method("mc-dropout")
class MCDropout(UncertaintyMethod):
    """Dropout before the head; T stochastic passes at test time, mean softmax."""

    paper = (
        "Gal & Ghahramani, Dropout as a Bayesian Approximation: Representing Model "
        "Uncertainty in Deep Learning, ICML 2016"
    )
    hparams = {
        "p": HParam(0.5, help="dropout probability (training and test)",
                    valid=Range(0, 1, open_high=True)),
        "samples": HParam(20, help="T stochastic passes at test time", test_time=True,
                          valid=AT_LEAST_ONE),
        "score": HParam("msp", help="OoD score: msp or entropy of the mean softmax",
                        test_time=True, choices=PROB_SCORES),
    }  # fmt: skip

    def build(self) -> nn.Module:
        backbone = build_backbone(self.hp.backbone, self.info.input_shape)
        head = DropoutHead(backbone.feature_dim, self.info.num_classes, self.hp.p)
        return Classifier(backbone, head)

    def predict_batch(self, x: torch.Tensor) -> Outputs:
        features = self.model.backbone(x).float()
        probs = self.model.head.sample(features, self.hp.samples, self.rng)
        return prob_outputs(probs, self.hp.score, "mc-dropout", features=features)
