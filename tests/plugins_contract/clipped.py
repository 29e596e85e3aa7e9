"""Example of the ``grad_clip`` training option (belief matching, FlowGMM): the gradients'
total norm after clipping is recorded at each step."""

from __future__ import annotations

import torch

from benchmark import Batch, register_method
from benchmark.contracts import TRAINING_OPTIONS
from benchmark.method import Method


@register_method("ex-clipped")
class Clipped(Method):
    """Cross-entropy with the declared ``grad_clip`` setting."""

    hparams = {"grad_clip": TRAINING_OPTIONS["grad_clip"]}
    norms: list[float] = []

    def on_step_end(self, batch: Batch) -> None:
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        type(self).norms.append(float(torch.linalg.vector_norm(torch.stack(
            [torch.linalg.vector_norm(g) for g in grads]))))  # fmt: skip
