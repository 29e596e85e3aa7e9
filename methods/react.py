"""ReAct: rectified activations (Sun, Guo, Li, ReAct: Out-of-distribution Detection With
Rectified Activations, NeurIPS 2021, §3, Eq. 1–2): the penultimate activations are clipped from
above at c, ``h̄ = min(h, c)``, the base's linear head gives ``z̄ = W h̄ + b`` and the score is
the energy ``logsumexp_c z̄_c``. c is the ``percentile``-th (90) percentile of all penultimate
activation values (flattened over units and images) of the ID ``val`` split. The clipped
logits are also the predictions (as the paper's ``forward_threshold``). Post hoc on the base's
checkpoint; the base needs a linear ``head``. c is in the record.
"""

from __future__ import annotations

import torch

from benchmark import BenchError, Bundle, HParam, Outputs, Range, Trainer, Uniform, register_method
from benchmark.tracks.ood import PostHocDetector, energy_score, percentile


@register_method("react")
class ReAct(PostHocDetector):
    """Energy of the logits of the clipped penultimate activations (Sun et al. 2021)."""

    paper = (
        "Sun, Guo, Li, ReAct: Out-of-distribution Detection With Rectified Activations, "
        "NeurIPS 2021"
    )
    hparams = {
        "percentile": HParam(
            90.0, Uniform(80.0, 99.0), "clip at this percentile of val activations", True,
            valid=Range(0, 100),
        ),
    }  # fmt: skip

    def calibrate(self, bundle: Bundle, trainer: Trainer) -> None:
        if not isinstance(getattr(self.model, "head", None), torch.nn.Linear):
            raise BenchError(f"react needs a base with a linear head, not {self.base}")
        val = self.split(bundle, "val")
        self.clip_ = percentile(self.outputs_over(val, trainer).features, self.hp.percentile)

    def predict_batch(self, x: torch.Tensor) -> Outputs:
        out = self.base_outputs(x)
        logits = self.model.head(out.features.clamp(max=self.clip_))
        return Outputs(
            logits=logits,
            features=out.features,
            ood_score=energy_score(logits).float(),
            ood_score_kind=self.name,
        )

    def summary(self) -> dict[str, float]:
        return {"clip": self.clip_}
