"""Decoupling: classifier re-training, cRT (Kang et al., Decoupling Representation and
Classifier for Long-Tailed Recognition, ICLR 2020, §4).

Stage 1 is the instance-balanced ``ce`` model (its cached checkpoint is reused). Stage 2 keeps
the backbone fixed, re-initialises the classifier (a linear layer with bias, as the paper's
dot-product classifier) and trains it alone with class-balanced sampling: 10 epochs, SGD with
cosine decay from 0.2, the protocol's batch size, weight decay and augmentation. Stage 2 is
cheap (no backbone gradients) and is re-run by each evaluation rather than cached.
"""

from __future__ import annotations

import torch
from torch import nn

from benchmark import Bundle, Method, Trainer, register_method
from benchmark.tracks.longtail import STAGE2_HPARAMS, retrain_head


@register_method("decouple-crt")
class DecoupleCRT(Method):
    """Fixed ce backbone, classifier re-trained with class-balanced sampling (Kang et al. 2020)."""

    paper = "Kang et al., Decoupling Representation and Classifier for Long-Tailed Recognition, ICLR 2020"  # noqa: E501
    base = "ce"
    tracks = ("longtail",)
    hparams = dict(STAGE2_HPARAMS)
    smoke_settings = {"stage2_epochs": 1}

    def calibrate(self, bundle: Bundle, trainer: Trainer) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(trainer.seed)
            head = nn.Linear(self.model.backbone.feature_dim, self.info.num_classes)
        head.to(self.device)
        train = bundle.splits["train"]
        retrain_head(
            self, train, trainer, head.parameters(), head,
            epochs=self.hp.stage2_epochs, lr=self.hp.stage2_lr,
        )  # fmt: skip
        self.model.head = head
