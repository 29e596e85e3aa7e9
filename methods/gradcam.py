"""Grad-CAM (Selvaraju, Cogswell, Das, Vedantam, Parikh, Batra, Grad-CAM: Visual Explanations
from Deep Networks via Gradient-based Localization, ICCV 2017, Eqs. 1–2).

Post hoc on the cached ``erm`` classifier: target layer = the backbone's last feature map
(``forward_map``; ResNet ``layer4[-1]``), target = the top-1 class's logit (before softmax),
``α_k = mean_ij ∂y^c/∂A^k_ij``, ``L^c = ReLU(Σ_k α_k A^k)``; upsampled bilinearly to the input
and min-max normalised to [0, 1] (``methods.md`` §9.4). A whole batch is explained with one
backward pass; gradients are enabled inside the method. The raw ``L^c`` at feature resolution
is ``extras["saliency_raw"]``.
"""

from __future__ import annotations

import torch

from benchmark import register_method
from benchmark.tracks.explain import to_input_size
from benchmark.tracks.posthoc import PosthocExplainer, grad_cam


@register_method("gradcam")
class GradCAM(PosthocExplainer):
    """Gradient-weighted class activation map of the top-1 logit (Selvaraju et al. 2017)."""

    paper = "Selvaraju et al., Grad-CAM: Visual Explanations from Deep Networks, ICCV 2017"

    def saliency(self, x: torch.Tensor):
        logits, raw, _ = grad_cam(self.model, x)
        return logits, to_input_size(raw, tuple(x.shape[2:])), raw
