"""Deep nearest neighbours (Sun, Ming, Zhu, Li, Out-of-Distribution Detection with Deep Nearest
Neighbors, ICML 2022, §3, Eq. 3): the bank is the L2-normalised penultimate features of the
whole ``train`` split; ``s(x) = −‖z − z_(k)‖₂``, the negated distance from the normalised
feature z to its k-th nearest bank vector. k = 50 (the paper's CIFAR-10 value). Post hoc on
the base's checkpoint (a CE-trained base, not the paper's SupCon "KNN+"); k is a test-time knob.
"""

from __future__ import annotations

import torch

from benchmark import AT_LEAST_ONE, Bundle, HParam, IntUniform, Outputs, Trainer, register_method
from benchmark.tracks.ood import PostHocDetector, knn_score, unit_rows


@register_method("knn")
class KNN(PostHocDetector):
    """Negated distance to the k-th nearest normalised training feature (Sun et al. 2022)."""

    paper = (
        "Sun, Ming, Zhu, Li, Out-of-Distribution Detection with Deep Nearest Neighbors, ICML 2022"
    )
    hparams = {
        "k": HParam(50, IntUniform(1, 1000), "the k of the k-th nearest neighbour", True,
                    valid=AT_LEAST_ONE),
    }  # fmt: skip
    smoke_settings = {"k": 1}

    def calibrate(self, bundle: Bundle, trainer: Trainer) -> None:
        train = self.split(bundle, "train")
        self.bank_ = unit_rows(self.outputs_over(train, trainer).features)

    def score(self, x: torch.Tensor, out: Outputs) -> torch.Tensor:
        return knn_score(unit_rows(out.features), self.bank_, self.hp.k)
