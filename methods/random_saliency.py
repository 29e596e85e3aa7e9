"""Sanity floor of the explanation track: a uniformly random map per image (Adebayo et al.,
Sanity Checks for Saliency Maps, NeurIPS 2018, use such maps as the reference an explainer
must beat). Post hoc on the cached ``erm`` classifier; the noise comes from ``method.rng``."""

from __future__ import annotations

import torch

from benchmark import register_method
from benchmark.tracks.explain import PosthocExplainer


@register_method("random-saliency")
class RandomSaliency(PosthocExplainer):
    """Uniform random saliency in [0, 1] per pixel (a floor; the logits are the base's)."""

    paper = "Adebayo et al., Sanity Checks for Saliency Maps, NeurIPS 2018 (random baseline)"

    def saliency(self, x: torch.Tensor):
        b, _, h, w = x.shape
        maps = torch.rand(b, h, w, generator=self.rng, device=x.device)
        return self.model(x), maps, None
