"""DUQ: Deterministic Uncertainty Quantification (van Amersfoort, Smith, Teh, Gal, Uncertainty
Estimation Using a Single Deep Deterministic Neural Network, ICML 2020; specs/methods.md §4).

The backbone's features f(x) (d) are mapped per class to ``z_c = W_c f(x)`` (n = ``centroid_size``)
and compared with class centroids e_c by the RBF kernel
``K_c = exp(−(1/n)‖z_c − e_c‖² / (2σ²))``. Loss: BCE between K (B, C) and the one-hot labels,
averaged over batch and classes, plus ``λ·mean_i(‖∇ₓ Σ_c K_c(x_i)‖₂ − 1)²`` (two-sided gradient
penalty). After every optimiser step the centroids move by an exponential moving average
(γ) of the same batch's embeddings, computed with the model in evaluation mode.

Prediction = argmax_c K_c; OoD score = max_c log K_c, the log of the paper's certainty max_c K_c
(the same ranking, hence the same AUROC / FPR@95, without ties where K underflows to 0). The kernel
values do not sum to 1: the **probabilities** the metrics see (and ECE is computed from) are the
normalised kernel values ``K_c / Σ_k K_k``; ``logits`` = log K (so softmax(logits) is the same).
The record's ``details["method"]`` says so. σ = 0.1, γ = 0.999 and the FashionMNIST
initialisation are the paper code's; λ = 0.05 is its FashionMNIST choice (CIFAR: 0.5–0.75).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from benchmark import (
    AT_LEAST_ONE,
    NON_NEGATIVE,
    POSITIVE,
    Batch,
    Classifier,
    HParam,
    LogUniform,
    Outputs,
    Range,
    Trainer,
    build_backbone,
    register_method,
)
from benchmark.tracks import backbones as _track_backbones  # noqa: F401  (registers them)
from benchmark.tracks.uncertainty import RBFHead, UncertaintyMethod, gradient_penalty


@register_method("duq")
class DUQ(UncertaintyMethod):
    """RBF centroids with EMA updates, BCE on kernel values, two-sided gradient penalty."""

    paper = (
        "van Amersfoort et al., Uncertainty Estimation Using a Single Deep Deterministic "
        "Neural Network, ICML 2020"
    )
    hparams = {
        "length_scale": HParam(0.1, LogUniform(0.05, 1.0), "RBF length scale σ", valid=POSITIVE),
        "gp_weight": HParam(
            0.05, help="λ of the two-sided gradient penalty (0: off)", valid=NON_NEGATIVE
        ),
        "gamma": HParam(
            0.999, help="EMA decay γ of the centroids", valid=Range(0, 1, open_high=True)
        ),
        "centroid_size": HParam(256, help="embedding size n per class", valid=AT_LEAST_ONE),
        "init": HParam(
            "mnist",
            help="initialisation of W and the centroids: mnist (the FashionMNIST code) or cifar",
            choices=("mnist", "cifar"),
        ),
    }
    smoke_settings = {"centroid_size": 16}

    def build(self) -> nn.Module:
        backbone = build_backbone(self.hp.backbone, self.info.input_shape)
        head = RBFHead(
            backbone.feature_dim,
            self.info.num_classes,
            self.hp.centroid_size,
            self.hp.length_scale,
            self.hp.gamma,
            self.hp.init,
        )
        return Classifier(backbone, head)  # forward: kernel values K (B, C)

    def loss(self, batch: Batch) -> torch.Tensor:
        """BCE(K, onehot) + λ·GP; ``batch.x`` gets ``requires_grad`` when λ > 0."""
        x = batch.x
        if self.hp.gp_weight > 0:
            x = x.detach().requires_grad_(True)
        kernel = self.model(x).float()
        onehot = F.one_hot(batch.y, self.info.num_classes).float()
        loss = F.binary_cross_entropy(kernel, onehot)
        if self.hp.gp_weight > 0:
            loss = loss + self.hp.gp_weight * gradient_penalty(x, kernel.sum(dim=1))
        return loss

    def train_step(
        self, batch: Batch, optimizers: list[torch.optim.Optimizer], trainer: Trainer
    ) -> torch.Tensor:
        """Loss, one optimiser step (float32: the penalty differentiates twice), then the
        centroid update on the same batch with the model in evaluation mode (BN frozen)."""
        loss = self.loss(batch)
        trainer.step(self, optimizers[0], loss)
        self.model.eval()
        with torch.no_grad():
            features = self.model.backbone(batch.x)
        self.model.head.update(features, F.one_hot(batch.y, self.info.num_classes).float())
        self.model.train()
        return loss.detach().float()

    def predict_batch(self, x: torch.Tensor) -> Outputs:
        """logits = log K (B, C); probabilities K_c / Σ_k K_k = softmax(log K), computed in log
        space (K underflows to 0 far from every centroid); OoD score max_c log K_c, a monotone
        function of max_c K_c (same ranking, same AUROC / FPR, no ties from underflow)."""
        features = self.model.backbone(x)
        log_k = self.model.head.log_kernel(features.float())
        return Outputs(
            logits=log_k,
            features=features,
            probs_=torch.softmax(log_k, dim=1),
            ood_score=log_k.max(dim=1).values,
            ood_score_kind="duq-max-log-kernel",
        )

    def summary(self) -> dict[str, Any]:
        return {"probabilities": "normalised kernel values K_c / sum_k K_k (ECE uses them)"}
