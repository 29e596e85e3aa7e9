"""Mahalanobis detector without OoD data (Lee, Lee, Lee, Shin, A Simple Unified Framework for
Detecting Out-of-Distribution Samples and Adversarial Attacks, NeurIPS 2018, Eq. 1–2; the
OpenOOD ``MDS`` variant): class-conditional Gaussians with one tied covariance on the base's
penultimate features, fitted on the ``train`` split with its true labels (float64, MLE
covariance, pseudo-inverse); ``s(x) = max_c −½ (h − μ_c)ᵀ Σ⁻¹ (h − μ_c)``.

Optional input pre-processing (Lee et al. Eq. 4) at a fixed ``epsilon`` (default 0: off):
``x̂ = x − ε · sign(∇_x ½ d²_ĉ(x)) / σ_channel`` towards the closest Gaussian ĉ, then the score
of x̂. No logistic regression over layers and nothing fitted on OoD samples (that oracle
protocol of the paper is not offered). Post hoc on the base's checkpoint; ε is a test-time
knob. The covariance's condition number is in the record.
"""

from __future__ import annotations

import torch

from benchmark import NON_NEGATIVE, Bundle, HParam, Outputs, Trainer, Uniform, register_method
from benchmark.tracks.ood import (
    PostHocDetector,
    fit_tied_gaussian,
    mahalanobis_distances,
    mahalanobis_score,
)


@register_method("mahalanobis")
class Mahalanobis(PostHocDetector):
    """Max over classes of the negative Mahalanobis distance, tied covariance (Lee et al. 2018)."""

    paper = (
        "Lee, Lee, Lee, Shin, A Simple Unified Framework for Detecting Out-of-Distribution "
        "Samples and Adversarial Attacks, NeurIPS 2018"
    )
    hparams = {
        "epsilon": HParam(
            0.0, Uniform(0.0, 0.005), "input pre-processing step ε ([0, 1] pixel units; 0 off)",
            True, valid=NON_NEGATIVE,
        ),
    }  # fmt: skip

    def calibrate(self, bundle: Bundle, trainer: Trainer) -> None:
        train = self.split(bundle, "train")
        h = self.outputs_over(train, trainer).features
        self.gaussian_ = fit_tied_gaussian(h, train.labels.to(h.device), self.info.num_classes)

    def score(self, x: torch.Tensor, out: Outputs) -> torch.Tensor:
        eps = self.hp.epsilon
        if eps == 0:
            return mahalanobis_score(out.features, self.gaussian_)
        with torch.enable_grad(), torch.autocast(x.device.type, enabled=False):
            xg = x.detach().float().requires_grad_(True)
            d = mahalanobis_distances(self.base_outputs(xg).features.float(), self.gaussian_)
            loss = 0.5 * d.min(dim=1).values.sum()
            (grad,) = torch.autograd.grad(loss, xg)
        std = torch.tensor(self.info.std, device=x.device).view(1, -1, 1, 1)
        x_hat = (xg - eps * grad.sign() / std).detach()
        return mahalanobis_score(self.base_outputs(x_hat).features, self.gaussian_)

    def summary(self) -> dict[str, float]:
        return {"covariance_condition": self.gaussian_.condition}
