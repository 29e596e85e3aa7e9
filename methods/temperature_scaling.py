"""Temperature scaling (Guo, Pleiss, Sun, Weinberger, On Calibration of Modern Neural Networks,
ICML 2017, §4.2): one scalar T > 0 divides the base's logits; T minimises the NLL on the
held-out ``val`` split (never ``test``). Predictions are unchanged; probabilities, ECE and the
max-softmax OoD score are those of ``softmax(z / T)``. The fitted T is in the record
(``details["method"]``). Post hoc on the base's checkpoint.
"""

from __future__ import annotations

import torch

from benchmark import Bundle, Outputs, Trainer, register_method
from benchmark.tracks.ood import PostHocDetector, fit_temperature, msp_score


@register_method("temperature-scaling")
class TemperatureScaling(PostHocDetector):
    """Logits divided by a temperature fitted on ``val`` by NLL (Guo et al. 2017)."""

    paper = "Guo, Pleiss, Sun, Weinberger, On Calibration of Modern Neural Networks, ICML 2017"

    def calibrate(self, bundle: Bundle, trainer: Trainer) -> None:
        val = self.split(bundle, "val")
        logits = self.outputs_over(val, trainer).logits
        self.temperature_ = fit_temperature(logits, val.labels.to(logits.device))

    def predict_batch(self, x: torch.Tensor) -> Outputs:
        out = self.base_outputs(x)
        logits = out.logits.float() / self.temperature_
        return Outputs(
            logits=logits,
            features=out.features,
            ood_score=msp_score(logits),
            ood_score_kind=self.name,
        )

    def summary(self) -> dict[str, float]:
        return {"temperature": self.temperature_}
