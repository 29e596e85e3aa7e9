"""CAM: class activation mapping (Zhou, Khosla, Lapedriza, Oliva, Torralba, Learning Deep
Features for Discriminative Localization, CVPR 2016, Eq. 2; ``pytorch_CAM.py`` of the
official code).

Post hoc on the cached ``erm`` classifier (backbone + global average pool + linear head):
``M_c = Σ_k w_ck A_k`` on the backbone's last feature map for the top-1 class, no bias, no
ReLU; upsampled bilinearly to the input and min-max normalised (so negative evidence is low
but not clipped). The raw map at feature resolution is ``extras["saliency_raw"]``.
"""

from __future__ import annotations

import torch

from benchmark import register_method
from benchmark.tracks.explain import to_input_size
from benchmark.tracks.posthoc import PosthocExplainer, cam


@register_method("cam")
class CAM(PosthocExplainer):
    """Class activation map of the top-1 class on the base classifier (Zhou et al. 2016)."""

    paper = "Zhou et al., Learning Deep Features for Discriminative Localization, CVPR 2016"

    def saliency(self, x: torch.Tensor):
        logits, raw, _ = cam(self.model, x)
        return logits, to_input_size(raw, tuple(x.shape[2:])), raw
