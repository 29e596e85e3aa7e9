"""Attention Branch Network (Fukui, Hirakawa, Yamashita, Fujiyoshi, CVPR 2019): a classifier
that explains itself with the attention map its own perception branch uses.

On the protocol's convolutional backbone split into a trunk g(x) and its last stage
(``benchmark.tracks.attention.AttentionBranchNetwork``): an attention branch (a stride-1 copy
of the last stage, BN, Conv1×1 to K channels, BN, ReLU) gives the map M = σ(BN(Conv3×3))
in [0, 1] and its own class logits (GAP of a Conv1×1); the perception branch classifies
(1 + M)·g with the last stage, GAP and FC. Loss = CE(attention logits) + CE(perception
logits), equal weights as the official code (``att_weight`` changes the first). Accuracy and
Insertion/Deletion use the perception logits; the explanation is M, bilinearly upsampled to
the input, in [0, 1] (no min-max step, as the official visualiser). Trained from scratch with
the dataset's protocol (``objects-masks``: ``tiny-cnn``, 12 epochs, as ``erm``; the map is
the 8×8 grid of its last stage).
"""

from __future__ import annotations

from torch import nn

from benchmark import NON_NEGATIVE, HParam, Method, register_method
from benchmark.backbones import build_backbone
from benchmark.tracks.attention import AttentionBranchNetwork, TwoBranchExplainer


@register_method("abn")
class ABN(TwoBranchExplainer, Method):
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
