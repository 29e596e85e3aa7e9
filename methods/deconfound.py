"""De-confounded training with the causal-norm classifier (Tang et al., Long-Tailed
Classification by Keeping the Good and Removing the Bad Momentum Causal Effect, NeurIPS 2020,
§4.1; official code KaihuaTang/Long-Tailed-Recognition.pytorch, ``causal_norm*.yaml``).

- Classifier: multi-head normalised ("causal norm") logits
  ``y_c = (τ/K) Σ_k ⟨x_k/‖x_k‖, w_{c,k}/(‖w_{c,k}‖ + γ)⟩``, K = 2 heads, τ = 16, γ = 1/32,
  no bias (``benchmark.tracks.longtail.CausalNormClassifier``).
- Loss: plain softmax cross-entropy; no re-sampling, no re-weighting.
- Every training step updates the moving-average feature ``d ← μ·d + mean_batch(x)`` (no
  (1 − μ) factor), saved in the checkpoint as the buffer ``head.embed``; the ``tde`` method
  uses it at test time. μ = 0.9 (``ma_schedule=fixed``, the CIFAR configs), or for the
  non-CIFAR configs (``ma_schedule=lr``, set by the ``imagenet-lt`` protocol) rescaled at each
  epoch start: ``μ = 1 − 0.1·min(50·lr_epoch, 1)``.
- Prediction here is the plain causal-norm logit ("De-confound" in the paper's tables).
"""

from __future__ import annotations

from torch import nn

from benchmark import (
    AT_LEAST_ONE,
    NON_NEGATIVE,
    POSITIVE,
    UNIT,
    Classifier,
    HParam,
    IntUniform,
    Uniform,
    build_backbone,
    register_method,
)
from benchmark.tracks.longtail import CausalNormClassifier, LongTailMethod
from benchmark.training import lr_factor


@register_method("deconfound")
class Deconfound(LongTailMethod):
    """Causal-norm multi-head classifier + moving-average feature direction (Tang et al. 2020)."""

    paper = (
        "Tang et al., Long-Tailed Classification by Keeping the Good and Removing the Bad "
        "Momentum Causal Effect, NeurIPS 2020"
    )
    hparams = {
        "num_head": HParam(
            2, IntUniform(1, 4), "heads K of the causal-norm classifier", valid=AT_LEAST_ONE
        ),
        "tau": HParam(16.0, Uniform(8.0, 32.0), "logit scale τ", valid=POSITIVE),
        "gamma": HParam(1 / 32, Uniform(0.0, 0.1), "γ in w/(‖w‖ + γ)", valid=NON_NEGATIVE),
        "ma_momentum": HParam(
            0.9, help="μ of the moving-average feature (ma_schedule=fixed)", valid=UNIT
        ),
        "ma_schedule": HParam(
            "fixed", help="fixed μ, or lr-scaled μ = 1 − 0.1·min(50·lr, 1)", choices=("fixed", "lr")
        ),
    }

    def build(self) -> nn.Module:
        backbone = build_backbone(self.hp.backbone, self.info.input_shape)
        head = CausalNormClassifier(
            backbone.feature_dim,
            self.info.num_classes,
            num_head=self.hp.num_head,
            tau=self.hp.tau,
            gamma=self.hp.gamma,
            mu=self.hp.ma_momentum,
        )
        return Classifier(backbone, head)

    def on_epoch_start(self, epoch: int) -> None:
        if self.hp.ma_schedule == "lr":
            lr = self.hp.lr * lr_factor(self.hp, epoch)
            self.model.head.set_momentum(1.0 - 0.1 * min(50.0 * lr, 1.0))
