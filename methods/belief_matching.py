"""Belief matching (Joo, Chung, Seo, Being Bayesian about Categorical Probability, ICML 2020;
specs/methods.md §6).

The network's outputs are the concentration of a Dirichlet posterior, ``α = exp(logits)``.
Loss: the negative ELBO ``mean_i[coeff·KL(Dir(α_i) ‖ Dir(β)) − (ψ(α_{i,y}) − ψ(α_{i,0}))]`` with
prior β_k = ``prior`` = 1 and KL coefficient ``coeff`` (0.01: the paper code's ResNet-18 /
CIFAR-10 value, used here for every 10-class set; CIFAR-100 uses 0.003). Gradients are clipped
per parameter tensor to L2 norm 1 (``clip_per_tensor``), as the paper's trainer does.
Stability (specs/methods.md §10.6: "α = exp(logits) can overflow, so clamp logits"): the loss
sees the logits clamped to [−``max_logit``, ``max_logit``] (30: α ∈ [9e-14, 1.1e13], so α₀,
lgamma(α₀) and ψ stay finite in float32; exp overflows float32 above 88.7 and α → 0 makes ψ and
lgamma infinite). The KL term keeps trained logits far inside that range, so the clamp only
guards against a diverging step. Predictions use the unclamped logits (softmax is stable).

Prediction: E_q[π] = α/α₀ = softmax(logits) (ECE is computed from it). OoD score (``score``,
test time): ``msp`` = max_c α_c/α₀ (default), ``entropy`` = −H[α/α₀], or ``alpha0`` = α₀ (the
Dirichlet's total evidence).
"""

from __future__ import annotations

import torch

from benchmark import (
    NON_NEGATIVE,
    POSITIVE,
    Batch,
    HParam,
    LogUniform,
    Outputs,
    Trainer,
    register_method,
)
from benchmark.device import autocast
from benchmark.tracks import backbones as _track_backbones  # noqa: F401  (registers them)
from benchmark.tracks.uncertainty import (
    UncertaintyMethod,
    belief_matching_loss,
    prob_score,
    step_with_per_tensor_clip,
)


@register_method("belief-matching")
class BeliefMatching(UncertaintyMethod):
    """Dirichlet ELBO (α = exp(logits)) with prior β and KL coefficient; prediction α/α₀."""

    paper = "Joo, Chung, Seo, Being Bayesian about Categorical Probability, ICML 2020"
    hparams = {
        "coeff": HParam(0.01, LogUniform(1e-4, 0.1), "KL coefficient", valid=NON_NEGATIVE),
        "prior": HParam(1.0, help="Dirichlet prior concentration β_k", valid=POSITIVE),
        "clip_per_tensor": HParam(
            1.0,
            help="clip each parameter tensor's gradient to this L2 norm (0: off)",
            valid=NON_NEGATIVE,
        ),
        "max_logit": HParam(
            30.0, help="logits clamped to ±this inside the loss (exp overflow)", valid=POSITIVE
        ),
        "score": HParam(
            "msp",
            help="OoD score: msp, entropy or alpha0",
            test_time=True,
            choices=("msp", "entropy", "alpha0"),
        ),
    }

    def loss(self, batch: Batch) -> torch.Tensor:
        """The negative ELBO on the batch's logits clamped to ±``max_logit`` (finite for any
        logits: ``exp`` of the raw ones overflows float32 above 88.7)."""
        logits = self.model(batch.x).float().clamp(-self.hp.max_logit, self.hp.max_logit)
        return belief_matching_loss(logits, batch.y, self.hp.prior, self.hp.coeff)

    def train_step(
        self, batch: Batch, optimizers: list[torch.optim.Optimizer], trainer: Trainer
    ) -> torch.Tensor:
        with autocast(trainer.device):
            loss = self.loss(batch)
        step_with_per_tensor_clip(self, optimizers[0], loss, self.hp.clip_per_tensor)
        return loss.detach().float()

    def predict_batch(self, x: torch.Tensor) -> Outputs:
        logits, features = self.model.forward_features(x)
        logits = logits.float()
        if self.hp.score == "alpha0":
            score = torch.logsumexp(logits, dim=1).exp()
        else:
            score = prob_score(torch.softmax(logits, dim=1), self.hp.score)
        return Outputs(
            logits=logits,
            features=features,
            ood_score=score,
            ood_score_kind=f"belief-{self.hp.score}",
        )
