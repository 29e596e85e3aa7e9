"""Example of ``optimizers`` + ``train_step``: two optimisers (backbone, head) with their own
learning rates, the head on its own schedule (SDE-Net's two optimisers, LfF's two models)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmark import Batch, HParam, Method, Trainer, register_method
from benchmark.training import make_optimizer


@register_method("ex-two-opt")
class TwoOptimizers(Method):
    """Backbone and head updated by two SGD optimisers; the head's lr is constant."""

    hparams = {"head_lr": HParam(0.05, help="the head's learning rate (constant schedule)")}
    steps: list[tuple[float, float]] = []  # (backbone lr, head lr) seen at each step

    def optimizers(self) -> list[torch.optim.Optimizer]:
        body = make_optimizer(self.hp, [{"params": list(self.model.backbone.parameters())}])
        head = torch.optim.SGD(
            [{"params": list(self.model.head.parameters()), "lr": self.hp.head_lr,
              "lr_factor": lambda epoch: 1.0}],
            lr=self.hp.head_lr,
        )  # fmt: skip
        return [body, head]

    def train_step(
        self, batch: Batch, optimizers: list[torch.optim.Optimizer], trainer: Trainer
    ) -> torch.Tensor:
        body, head = optimizers
        type(self).steps.append((body.param_groups[0]["lr"], head.param_groups[0]["lr"]))
        loss = F.cross_entropy(self.model(batch.x), batch.y)
        body.zero_grad(set_to_none=True)
        trainer.step(self, head, loss)  # zero head, backward, step head
        body.step()  # the backbone's gradients of the same backward
        return loss.detach().float()
