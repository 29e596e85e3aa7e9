"""Example of a method with no classifier output: a per-pixel Gaussian density model trained
by maximum likelihood, reporting its own metric (negative log-likelihood per dimension)."""

from __future__ import annotations

import math

import torch
from torch import nn

from benchmark import Batch, Outputs, register_method
from benchmark.method import Method


class PixelGaussian(nn.Module):
    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.mean = nn.Parameter(torch.zeros(shape))
        self.log_std = nn.Parameter(torch.zeros(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood per dimension of each sample (N,), in nats."""
        z = (x - self.mean) * torch.exp(-self.log_std)
        nll = 0.5 * z**2 + self.log_std + 0.5 * math.log(2 * math.pi)
        return nll.flatten(1).mean(1)


@register_method("ex-generative")
class Generative(Method):
    """A density model: no logits; reports ``nll`` (lower is better)."""

    classifier = False
    reports = {"nll": False}

    def build(self) -> nn.Module:
        return PixelGaussian(tuple(self.info.input_shape))

    def loss(self, batch: Batch) -> torch.Tensor:
        return self.model(batch.x).mean()

    def predict_batch(self, x: torch.Tensor) -> Outputs:
        return Outputs(extras={"metric.nll": self.model(x).float()})
