"""Example of randomness at inference from ``self.rng`` (MC dropout): T dropout masks on the
features, drawn from the generator seeded by (seed, split)."""

from __future__ import annotations

import torch

from benchmark import HParam, Outputs, register_method
from benchmark.method import Method


@register_method("ex-mc-dropout")
class MCDropout(Method):
    """Softmax averaged over ``samples`` dropout masks on the penultimate features."""

    hparams = {
        "samples": HParam(4, help="dropout samples at test time", test_time=True),
        "p": HParam(0.5, help="dropout probability at test time", test_time=True),
    }

    def predict_batch(self, x: torch.Tensor) -> Outputs:
        features = self.model.backbone(x)
        probs = torch.zeros(len(x), self.info.num_classes, device=x.device)
        for _ in range(self.hp.samples):
            keep = torch.rand(features.shape, generator=self.rng, device=x.device) >= self.hp.p
            probs += torch.softmax(self.model.head(features * keep / (1 - self.hp.p)).float(), 1)
        probs /= self.hp.samples
        return Outputs(logits=probs.log(), features=features, probs_=probs,
                       ood_score=probs.max(1).values, ood_score_kind="mc-msp")  # fmt: skip
