"""Energy score: the negative free energy of the logits, ``T · logsumexp(f(x)/T)``, T = 1
(Liu, Wang, Owens, Li, Energy-based Out-of-distribution Detection, NeurIPS 2020, Eq. 1; the
post-hoc variant without energy-bounded fine-tuning). Post hoc on the base's checkpoint; T is
a test-time knob."""

from __future__ import annotations

import torch

from benchmark import POSITIVE, HParam, LogUniform, Outputs, register_method
from benchmark.tracks.ood import PostHocDetector, energy_score


@register_method("energy")
class Energy(PostHocDetector):
    """s(x) = T · logsumexp_c f_c(x)/T on the base (Liu et al. 2020)."""

    paper = "Liu, Wang, Owens, Li, Energy-based Out-of-distribution Detection, NeurIPS 2020"
    hparams = {
        "temperature": HParam(
            1.0, LogUniform(0.1, 10.0), "energy temperature T", True, valid=POSITIVE
        ),
    }

    def score(self, x: torch.Tensor, out: Outputs) -> torch.Tensor:
        return energy_score(out.logits, self.hp.temperature)
