"""Deep ensembles (Lakshminarayanan, Pritzel, Blundell, Simple and Scalable Predictive
Uncertainty Estimation using Deep Ensembles, NeurIPS 2017; specs/baselines.md §14).

Post hoc on ``erm``: the M = ``members`` members are the base trained with M different seeds,
each its own cached checkpoint (``bench run --method erm --seed s`` trains or reuses the same
one); nothing is retrained when they exist. Run seed s uses members ``s, s + k, …, s + (M−1)k``
with k = ``seed_stride``: the first is always the plain ``erm`` run of seed s (the runner hands
the run's own seed to ``adopt``). With the default k = 1 the runs of seeds 0, 1, 2 share members
(0–4, 1–5, 2–6: 7 trainings, so their spread understates the spread over independent
ensembles); k ≥ the number of run seeds (e.g. 1000) makes them disjoint at 3·M trainings.
Prediction p̄ = (1/M) Σ_m softmax(f_m(x)) (probabilities averaged, not logits, as the paper);
ECE uses p̄. OoD score (``score``): ``msp``
= max_c p̄_c (default) or ``entropy`` = −H[p̄]. No adversarial training of the members (the
paper's optional addition).
"""

from __future__ import annotations

import torch

from benchmark import AT_LEAST_ONE, HParam, Method, Outputs, register_method
from benchmark.tracks.uncertainty import PROB_SCORES, UncertaintyMethod, prob_outputs


@register_method("deep-ensemble")
class DeepEnsemble(UncertaintyMethod):
    """Mean softmax of M cached ``erm`` seeds."""

    paper = (
        "Lakshminarayanan, Pritzel, Blundell, Simple and Scalable Predictive Uncertainty "
        "Estimation using Deep Ensembles, NeurIPS 2017"
    )
    base = "erm"
    hparams = {
        "members": HParam(5, help="ensemble size M", valid=AT_LEAST_ONE),
        "seed_stride": HParam(1, help="member seeds s, s+k, …, s+(M−1)k (k = this)",
                              valid=AT_LEAST_ONE),
        "score": HParam("msp", help="OoD score: msp or entropy of the mean softmax",
                        test_time=True, choices=PROB_SCORES),
    }  # fmt: skip
    smoke_settings = {"members": 2}

    def base_seeds(self, seed: int) -> list[int]:
        return [seed + i * self.hp.seed_stride for i in range(self.hp.members)]

    def adopt_members(self, members: list[Method]) -> None:
        self.members = [member.model for member in members]

    def predict_batch(self, x: torch.Tensor) -> Outputs:
        probs = torch.zeros(len(x), self.info.num_classes, device=x.device)
        for model in self.members:
            model.eval()
            probs += torch.softmax(model(x).float(), dim=1)
        return prob_outputs(probs / len(self.members), self.hp.score, "ensemble")
