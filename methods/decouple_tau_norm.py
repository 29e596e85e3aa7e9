"""Decoupling: τ-normalised classifier (Kang et al., Decoupling Representation and Classifier
for Long-Tailed Recognition, ICLR 2020, §4, Eq. 3).

Training-free on the instance-balanced ``ce`` model: ``ŵ_c = w_c / ‖w_c‖^τ`` (τ = 1 is full
normalisation, τ = 0 the plain classifier). The paper selects τ on the validation set; with
``tau_from_val`` (default) τ is the value of {0, 0.1, …, 1} with the best balanced accuracy on
``val`` (ties: the smallest τ), else ``tau``. Both are test-time knobs: the ``ce`` checkpoint is
reused. The τ used is stored in the record's ``details["method"]``.
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
from benchmark.metric import per_class_accuracy
from benchmark.tracks.longtail import extract_features


@register_method("decouple-tau-norm")
class DecoupleTauNorm(Method):
    """ce classifier weights divided by their norm to the power τ (Kang et al. 2020)."""

    paper = "Kang et al., Decoupling Representation and Classifier for Long-Tailed Recognition, ICLR 2020"  # noqa: E501
    base = "ce"
    tracks = ("longtail",)
    hparams = {
        "tau": HParam(
            1.0, Uniform(0.0, 1.0), "normalisation power τ", test_time=True, valid=NON_NEGATIVE
        ),
        "tau_from_val": HParam(True, help="pick τ in {0, 0.1, ..., 1} on val", test_time=True),
    }

    def weights(self, tau: float) -> torch.Tensor:
        w = self.model.head.weight
        return w / w.norm(dim=1, keepdim=True).clamp_min(1e-12).pow(tau)

    def calibrate(self, bundle: Bundle, trainer: Trainer) -> None:
        self.tau_ = self.hp.tau
        if not (self.hp.tau_from_val and "val" in bundle.splits):
            return
        val = bundle.splits["val"]
        features = extract_features(self, val, trainer)
        labels = val.labels.to(features.device)
        best = -1.0
        for tau in [i / 10 for i in range(11)]:
            preds = (features @ self.weights(tau).t().float()).argmax(1)
            bacc = float(per_class_accuracy(preds, labels, self.info.num_classes)[0].nanmean())
            if bacc > best:
                best, self.tau_ = bacc, tau

    def predict_batch(self, x: torch.Tensor) -> Outputs:
        features = self.model.backbone(x)
        logits = features @ self.weights(self.tau_).t().to(features.dtype)
        probs = torch.softmax(logits.float(), dim=1)
        return Outputs(
            logits=logits, features=features, ood_score=probs.max(1).values, ood_score_kind="msp"
        )

    def summary(self) -> dict[str, float]:
        return {"tau": self.tau_}
