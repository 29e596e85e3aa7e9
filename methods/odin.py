"""ODIN: temperature scaling plus input pre-processing (Liang, Li, Srikant, Enhancing the
Reliability of Out-of-distribution Image Detection in Neural Networks, ICLR 2018, Eq. 1–2).

``x̃ = x − ε · sign(∇_x CE(f(x)/T, ŷ))`` (ε in [0, 1] pixel units, divided by the channel std
in normalised space, as the official ``calData.py``), then ``s(x) = max_c softmax(f(x̃)/T)_c``.
T = 1000 and ε = 0.0014 are fixed by default (the paper's DenseNet/CIFAR-10 values), never
tuned on OoD data. Accuracy and calibration are those of the base's unperturbed logits.
Post hoc on the base's checkpoint; T and ε are test-time knobs.
"""

from __future__ import annotations

import torch

from benchmark import NON_NEGATIVE, POSITIVE, HParam, LogUniform, Outputs, Uniform, register_method
from benchmark.tracks.ood import PostHocDetector, msp_score, odin_inputs


@register_method("odin")
class ODIN(PostHocDetector):
    """Max softmax at temperature T of the ε-perturbed input (Liang et al. 2018)."""

    paper = (
        "Liang, Li, Srikant, Enhancing the Reliability of Out-of-distribution Image Detection "
        "in Neural Networks, ICLR 2018"
    )
    hparams = {
        "temperature": HParam(
            1000.0, LogUniform(1.0, 1000.0), "softmax temperature T", True, valid=POSITIVE
        ),
        "epsilon": HParam(
            0.0014, Uniform(0.0, 0.004), "perturbation ε ([0, 1] pixel units)", True,
            valid=NON_NEGATIVE,
        ),
    }  # fmt: skip

    def score(self, x: torch.Tensor, out: Outputs) -> torch.Tensor:
        t = self.hp.temperature
        x_t = odin_inputs(
            lambda v: self.base_outputs(v).logits, x, t, self.hp.epsilon, self.info.std
        )
        return msp_score(self.base_outputs(x_t).logits.float() / t)
