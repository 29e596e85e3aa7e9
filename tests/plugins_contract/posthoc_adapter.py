"""Example of a post-hoc method that trains a part of its own (an adapter on the frozen base's
features, like ALA's adapter or a calibrator), cached in its own checkpoint keyed on the
base's, on a base chosen per run (``--set base=NAME``)."""

from __future__ import annotations

import torch
from torch import nn

from benchmark import Bundle, Outputs, Trainer, register_method
from benchmark.method import Method


class Adapted(nn.Module):
    def __init__(self, base: nn.Module, dim: int, classes: int) -> None:
        super().__init__()
        self.base = base
        self.adapter = nn.Linear(dim, classes)

    def train(self, mode: bool = True) -> Adapted:
        """The base stays in evaluation mode (its BatchNorm statistics are not the adapter's
        to change: they are not in this method's checkpoint)."""
        super().train(mode)
        self.base.eval()
        return self

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            _, features = self.base.forward_features(x)
        return self.adapter(features), features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[0]


@register_method("ex-adapter")
class Adapter(Method):
    """A new linear head trained on the frozen base (one epoch of the protocol)."""

    base = "erm"
    base_settable = True
    posthoc_checkpoint = True
    calibrations = 0

    def calibrate(self, bundle: Bundle, trainer: Trainer) -> None:
        type(self).calibrations += 1
        base = self.model
        for p in base.parameters():
            p.requires_grad_(False)
        dim = base.head.in_features
        self.model = Adapted(base, dim, self.info.num_classes).to(self.device)
        self.model.adapter.weight.data.copy_(base.head.weight.data)
        self.model.adapter.bias.data.copy_(base.head.bias.data)
        trainer.fit(self, bundle.splits["train"])

    def loss(self, batch) -> torch.Tensor:
        return nn.functional.cross_entropy(self.model(batch.x), batch.y)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu() for k, v in self.model.adapter.state_dict().items()}

    def load_state_dict(self, state) -> None:
        base = self.model
        self.model = Adapted(base, base.head.in_features, self.info.num_classes)
        self.model.adapter.load_state_dict(state)
        self.model.to(self.device)

    def predict_batch(self, x: torch.Tensor) -> Outputs:
        logits, features = self.model.forward_features(x)
        return Outputs(logits=logits, features=features)
