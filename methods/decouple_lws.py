"""Decoupling: learnable weight scaling, LWS (Kang et al., Decoupling Representation and
Classifier for Long-Tailed Recognition, ICLR 2020, §4).

Stage 1 is the instance-balanced ``ce`` model (cached checkpoint reused). Stage 2 keeps the
backbone and the classifier's weights fixed and learns one scale per class,
``ŵ_c = f_c · w_c`` (f initialised to 1), with class-balanced sampling: 10 epochs, SGD with
cosine decay from 0.2, the protocol's batch size, weight decay and augmentation.
"""

from __future__ import annotations

import torch
from torch import nn

from benchmark import Bundle, Method, Trainer, register_method
from benchmark.tracks.longtail import STAGE2_HPARAMS, retrain_head


class ScaledLinear(nn.Module):
    """``z_c = f_c · ⟨w_c, x⟩`` with ``w`` frozen (a buffer) and the scales ``f`` learned."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("weight", weight.detach().clone())
        self.scale = nn.Parameter(torch.ones(weight.shape[0], device=weight.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x @ self.weight.t().to(x.dtype)) * self.scale.to(x.dtype)


@register_method("decouple-lws")
class DecoupleLWS(Method):
    """Fixed ce backbone and weights, per-class scales learned class-balanced (Kang et al. 2020)."""

    paper = "Kang et al., Decoupling Representation and Classifier for Long-Tailed Recognition, ICLR 2020"  # noqa: E501
    base = "ce"
    tracks = ("longtail",)
    hparams = dict(STAGE2_HPARAMS)
    smoke_settings = {"stage2_epochs": 1}

    def calibrate(self, bundle: Bundle, trainer: Trainer) -> None:
        head = ScaledLinear(self.model.head.weight)
        retrain_head(
            self, bundle.splits["train"], trainer, [head.scale], head,
            epochs=self.hp.stage2_epochs, lr=self.hp.stage2_lr,
        )  # fmt: skip
        self.model.head = head

    def summary(self) -> dict[str, float]:
        s = self.model.head.scale.detach()
        return {"scale_min": float(s.min()), "scale_max": float(s.max())}
