"""PGI, Predictive Group Invariance (Ahmed, Bengio, van Seijen, Courville, Systematic
generalisation with group invariant predictions, ICLR 2021; Faruk-Ahmed/
predictive_group_invariance ``mnist/main.py``).

Within each class the samples form two partitions: majority (bias-aligned) and minority
(bias-conflicting); here the known ones (``groups``: class × aligned, the paper's oracle
partitions; the paper otherwise infers them after one epoch). Loss:

- group-balanced CE: ``½ mean CE(majority) + ½ mean CE(minority)`` over the batch;
- ``λ(epoch) · Σ_c KL(p̄_min,c ‖ p̄_maj,c) / K`` (``benchmark.tracks.bias.pgi_penalty``) on
  the mean softmax of each partition, whose gradient reaches only the feature extractor
  (the last linear layer sees it detached, as in the code);
- λ = 0 in the first epoch, then linear *per iteration* from 0 to ``pgi_weight`` (50, the
  MNIST README's ``-wc``) over ``ramp_epochs`` (5, ``-u``) epochs, as the code's
  ``wc·min(1, (it − ipe + 1)/(ipe·u))`` with ``ipe`` the iterations per epoch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmark import NON_NEGATIVE, Batch, Dataset, HParam, LogUniform, register_method
from benchmark.tracks.bias import GroupMethod, pgi_penalty


@register_method("pgi")
class PGI(GroupMethod):
    """Match the mean predictions of each class's minority and majority partitions."""

    paper = "Ahmed et al., Systematic generalisation with group invariant predictions, ICLR 2021"
    hparams = {
        "pgi_weight": HParam(
            50.0, LogUniform(1.0, 100.0), "final penalty weight λ (-wc)", valid=NON_NEGATIVE
        ),
        "ramp_epochs": HParam(5, help="epochs of the linear ramp of λ after epoch 1 (-u)",
                              valid=NON_NEGATIVE),
    }  # fmt: skip

    @classmethod
    def incompatibility(cls, dataset: type[Dataset]) -> str | None:
        if "aligned" not in dataset.attrs:
            return (
                f"pgi needs the 'aligned' attribute (its two partitions), {dataset.name} lacks it"
            )
        return super().incompatibility(dataset)

    def weight(self, epoch: int, step: int, per_epoch: int) -> float:
        """λ at global step ``step`` (0-based) with ``per_epoch`` steps an epoch: 0 in epoch 0,
        then ``pgi_weight · min(1, (step − per_epoch + 1) / (per_epoch · ramp_epochs))``."""
        if epoch < 1:
            return 0.0
        if self.hp.ramp_epochs <= 0:
            return self.hp.pgi_weight
        ramp = (step - per_epoch + 1) / (per_epoch * self.hp.ramp_epochs)
        return self.hp.pgi_weight * min(1.0, max(0.0, ramp))

    def loss(self, batch: Batch) -> torch.Tensor:
        features = self.model.backbone(batch.x)
        head = self.model.head
        z = head(features).float()
        minority = ~batch.attrs["aligned"].bool()
        ce = F.cross_entropy(z, batch.y, reduction="none")
        parts = [ce[m].mean() for m in (~minority, minority) if bool(m.any())]
        loss = sum(parts) / len(parts)
        if batch.epoch == 0:  # steps of the first epoch: the iterations per epoch
            self.per_epoch_ = batch.step + 1
        lam = self.weight(batch.epoch, batch.step, getattr(self, "per_epoch_", 1))
        if lam > 0:
            z_pen = F.linear(features, head.weight.detach(), head.bias.detach()).float()
            probs = torch.softmax(z_pen, dim=1)
            loss = loss + lam * pgi_penalty(probs, batch.y, minority, self.info.num_classes)
        return loss
