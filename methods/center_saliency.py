"""Sanity floor of the explanation track: the same centred Gaussian map for every image (σ =
a quarter of the shorter side), the centre prior of saliency benchmarks (Judd et al., ICCV
2009). A map that does not beat it is not reading the image. Post hoc on the cached ``erm``
classifier."""

from __future__ import annotations

import torch

from benchmark import register_method
from benchmark.tracks.explain import PosthocExplainer, center_map


@register_method("center-saliency")
class CenterSaliency(PosthocExplainer):
    """A fixed centred Gaussian saliency map (a floor; the logits are the base's)."""

    paper = "Judd et al., Learning to Predict Where Humans Look, ICCV 2009 (centre prior)"

    def saliency(self, x: torch.Tensor):
        b, _, h, w = x.shape
        maps = center_map((h, w), x.device).expand(b, h, w).clone()
        return self.model(x), maps, None
