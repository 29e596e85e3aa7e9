"""Attention Branch Network (Fukui, Hirakawa, Yamashita, Fujiyoshi, CVPR 2019): a classifier
that explains itself with the attention map its own perception branch uses.

On the protocol's convolutional backbone split into a trunk g(x) and its last stage
(``benchmark.tracks.attention.AttentionBranchNetwork``): an attention branch (a stride-1 copy
of the last stage, BN, Conv1×1 to K channels, BN, ReLU) gives the map M = σ(BN(Conv3×3))
in [0, 1] and its own class logits (GAP of a Conv1×1); the perception branch classifies
(1 + M)·g with the last stage, GAP and FC. Loss = CE(attention logits) + CE(perception
logits), equal weights as the official code (``att_weight`` changes the first). Accuracy and
Insertion/Deletion use the perception logits; the explanation is M, bilinearly upsampled to
the input, in [0, 1] (no min-max step, as the official visualiser).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmark import NON_NEGATIVE, Batch, HParam, Method, Outputs, register_method
from benchmark.backbones import build_backbone
from benchmark.tracks.attention import AttentionBranchNetwork, upsample_map


@register_method("abn")
class ABN(Method):
    """ABN: attention branch + perception branch on (1 + M)·g, both losses."""

    paper = "Fukui et al., Attention Branch Network, CVPR 2019"
    tracks = ("explain",)
    hparams = {
        "att_weight": HParam(
            1.0, help="weight of the attention branch's cross-entropy (1 in the paper)",
            valid=NON_NEGATIVE,
        ),
    }  # fmt: skip

    def build(self) -> nn.Module:
        backbone = build_backbone(self.hp.backbone, self.info.input_shape)
        return AttentionBranchNetwork(backbone, self.info.num_classes)

    def loss(self, batch: Batch) -> torch.Tensor:
        logits, att_logits, _, _ = self.model.forward_all(batch.x)
        return F.cross_entropy(logits, batch.y) + self.hp.att_weight * F.cross_entropy(
            att_logits, batch.y
        )

    def predict_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def predict_batch(self, x: torch.Tensor) -> Outputs:
        logits, _, m, features = self.model.forward_all(x)
        probs = torch.softmax(logits.float(), dim=1)
        return Outputs(
            logits=logits,
            features=features,
            ood_score=probs.max(dim=1).values,
            ood_score_kind="msp",
            saliency=upsample_map(m, tuple(x.shape[-2:])),
        )
