"""Building blocks of the long-tail methods: class priors, re-weighting, margins, heads, and
class-balanced classifier re-training. Each is a plain function or module with the paper's
formula in its docstring; the method plugins in ``methods/`` are recipes built from them.

Notation: ``z`` logits (B, C), ``y`` labels (B,), ``counts`` training images per class (C,).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.backbones import build_backbone
from benchmark.device import autocast
from benchmark.errors import BenchError
from benchmark.hparams import AT_LEAST_ONE, POSITIVE, HParam, IntUniform, LogUniform
from benchmark.method import Classifier, Method
from benchmark.outputs import Outputs

if TYPE_CHECKING:
    from benchmark.dataset import DatasetInfo, Split
    from benchmark.training import Trainer


class LongTailMethod(Method):
    """Shared base of the long-tail methods: backbone + bias-free linear classifier
    (``z = W f(x)``, the TDE code's baseline head), the long-tail track only, CUDA-graph safe."""

    tracks = ("longtail",)
    graph_safe = True

    def build(self) -> nn.Module:
        backbone = build_backbone(self.hp.backbone, self.info.input_shape)
        return Classifier(backbone, nn.Linear(backbone.feature_dim, self.info.num_classes, False))

    @functools.cached_property
    def counts(self) -> torch.Tensor:
        """Training images per class, on the device (copied once, before any graph capture)."""
        return self.info.train_counts.to(self.device)


# -- class statistics --------------------------------------------------------------------
def log_prior(counts: torch.Tensor) -> torch.Tensor:
    """log π_c = log(n_c / Σ n); an empty class gets log(1e-12) instead of -inf."""
    counts = counts.double()
    return torch.log((counts / counts.sum()).clamp_min(1e-12)).float()


def effective_number_weights(counts: torch.Tensor, beta: float) -> torch.Tensor:
    """Class-balanced weights (Cui et al. 2019, Eq. 4 and §4): ``w_c ∝ (1 − β) / (1 − β^{n_c})``,
    the inverse effective number of samples, normalised so that ``Σ_c w_c = C``.
    β = 0 gives uniform weights; β → 1 gives inverse class frequency."""
    n = counts.double().clamp_min(1)
    w = (1.0 - beta) / (1.0 - torch.pow(float(beta), n))
    return (w / w.sum() * len(counts)).float()


def ldam_margins(counts: torch.Tensor, max_margin: float = 0.5) -> torch.Tensor:
    """LDAM margins (Cao et al. 2019, Eq. 12): ``Δ_c = K / n_c^{1/4}``, with K chosen so that the
    largest margin (the rarest class) equals ``max_margin`` (0.5 in the official code)."""
    m = counts.double().clamp_min(1).pow(-0.25)
    return (m * (max_margin / m.max())).float()


# -- losses ----------------------------------------------------------------------------
def focal_loss(
    z: torch.Tensor, y: torch.Tensor, gamma: float, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Softmax focal loss (Lin et al. 2017, Eq. 5 without α): mean of ``−w_y (1 − p_y)^γ log p_y``.
    γ = 0 is cross-entropy; ``weight`` (per class) multiplies each sample's term."""
    logp = F.log_softmax(z.float(), dim=1).gather(1, y[:, None]).squeeze(1)
    loss = -((1.0 - logp.exp()).clamp_min(0).pow(gamma) * logp) if gamma else -logp
    if weight is not None:
        loss = loss * weight.to(loss.device)[y]
    return loss.mean()


def logit_adjusted_loss(
    z: torch.Tensor, y: torch.Tensor, counts: torch.Tensor, tau: float = 1.0
) -> torch.Tensor:
    """Logit-adjusted cross-entropy (Menon et al. 2021, Eq. 10): CE on ``z_c + τ log π_c``.
    With τ = 1 this is exactly Balanced Softmax (Ren et al. 2020, Eq. 4)."""
    return F.cross_entropy(z.float() + tau * log_prior(counts).to(z.device), y)


def ldam_loss(
    cos: torch.Tensor,
    y: torch.Tensor,
    margins: torch.Tensor,
    scale: float = 30.0,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """LDAM loss (Cao et al. 2019, Eq. 10, official code): CE on ``s · (z − Δ_y e_y)`` where z
    are cosine logits; ``weight`` is DRW's per-class weight (PyTorch's weighted mean)."""
    z = cos.float() - F.one_hot(y, cos.shape[1]).float() * margins.to(cos.device)[None, :]
    return F.cross_entropy(scale * z, y, weight=None if weight is None else weight.to(z.device))


# -- heads -----------------------------------------------------------------------------
class NormedLinear(nn.Module):
    """Cosine classifier of the LDAM-DRW code: ``z_c = ⟨x/‖x‖, w_c/‖w_c‖⟩`` (no bias, no scale)."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, dim).uniform_(-1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1) @ F.normalize(self.weight, dim=1).t()


class CausalNormClassifier(nn.Module):
    """The de-confounded multi-head "causal norm" classifier (Tang et al. 2020, Eq. 5–7).

    W ∈ R^{C×D} (init U(−1/√D, 1/√D), no bias) and the feature x are split into K heads of
    D/K dims. Per head, ``x̂_k = x_k/‖x_k‖`` and ``ŵ_{c,k} = w_{c,k}/(‖w_{c,k}‖ + γ)``;
    logits ``y_c = (τ/K) Σ_k ⟨x̂_k, ŵ_{c,k}⟩``.

    In training mode every forward updates the moving-average feature ``d ← μ·d + mean_batch(x)``
    (the buffer ``embed``; no (1 − μ) factor, as in the official code: only its direction is
    used). It is saved with the checkpoint and drives TDE inference (``tde_logits``).
    """

    def __init__(
        self,
        dim: int,
        num_classes: int,
        num_head: int = 2,
        tau: float = 16.0,
        gamma: float = 1 / 32,
        mu: float = 0.9,
    ) -> None:
        super().__init__()
        if num_head < 1 or dim % num_head:
            raise BenchError(f"num_head={num_head} must divide the feature dimension {dim}")
        self.num_head, self.tau, self.gamma = num_head, float(tau), float(gamma)
        bound = 1.0 / math.sqrt(dim)
        self.weight = nn.Parameter(torch.empty(num_classes, dim).uniform_(-bound, bound))
        self.register_buffer("embed", torch.zeros(dim))
        self.register_buffer("mu", torch.tensor(float(mu)))

    def heads(self, t: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., K, D/K)."""
        return t.reshape(*t.shape[:-1], self.num_head, t.shape[-1] // self.num_head)

    def normed_weight(self) -> torch.Tensor:
        """ŵ (C, K, D/K): each class-weight head divided by (its norm + γ)."""
        w = self.heads(self.weight)
        return w / (w.norm(dim=-1, keepdim=True) + self.gamma)

    def set_momentum(self, mu: float) -> None:
        self.mu.fill_(mu)

    def _logits(self, xh: torch.Tensor) -> torch.Tensor:
        w = self.normed_weight().to(xh.dtype)
        return torch.einsum("bkh,ckh->bc", xh, w) * (self.tau / self.num_head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                self.embed.mul_(self.mu).add_(x.detach().float().mean(dim=0))
        return self._logits(_unit(self.heads(x)))

    def cosine_to_embed(self, x: torch.Tensor) -> torch.Tensor:
        """cos_k(x) = ⟨x̂_k, d̂_k⟩ per sample and head: (B, K)."""
        d = _unit(self.heads(self.embed.to(x.dtype)))
        return (_unit(self.heads(x)) * d).sum(-1)

    def tde_logits(self, x: torch.Tensor, alpha: float) -> torch.Tensor:
        """Total direct effect (Tang et al. 2020, Eq. 9; ``use_effect`` in the official code):
        ``y_c = (τ/K) Σ_k ⟨x̂_k − α·cos_k(x)·d̂_k, ŵ_{c,k}⟩``, i.e. the plain logit minus
        ``α·cos_k·(τ/K)·⟨d̂_k, ŵ_{c,k}⟩`` per head."""
        xh = _unit(self.heads(x))
        d = _unit(self.heads(self.embed.to(xh.dtype)))
        cos = (xh * d).sum(-1, keepdim=True)
        return self._logits(xh - alpha * cos * d)


def _unit(t: torch.Tensor) -> torch.Tensor:
    """t / ‖t‖ over the last axis (a zero vector stays zero instead of becoming NaN)."""
    return t / t.norm(dim=-1, keepdim=True).clamp_min(1e-12)


# -- decoupled classifier learning (Kang et al. 2020) -------------------------------------
#: stage-2 settings shared by cRT and LWS (Kang et al. 2020, §5: 10 epochs, cosine from 0.2)
STAGE2_HPARAMS = {
    "stage2_epochs": HParam(
        10, IntUniform(5, 30), "classifier re-training epochs", valid=AT_LEAST_ONE
    ),
    "stage2_lr": HParam(
        0.2, LogUniform(0.02, 1.0), "classifier re-training learning rate", valid=POSITIVE
    ),
}


def class_balanced_indices(
    labels: torch.Tensor, n: int, gen: torch.Generator | None = None
) -> torch.Tensor:
    """``n`` indices drawn with class-balanced sampling (Kang et al. 2020, §3, q = 0): a class
    uniformly among the classes present, then an instance uniformly within it."""
    order = torch.argsort(labels, stable=True)
    counts = torch.bincount(labels)
    present = torch.nonzero(counts, as_tuple=True)[0]
    starts = torch.cumsum(counts, 0) - counts
    device = labels.device
    cls = present[torch.randint(len(present), (n,), generator=gen, device=device)]
    within = (torch.rand(n, generator=gen, device=device) * counts[cls]).long()
    within = torch.minimum(within, counts[cls] - 1)
    return order[starts[cls] + within]


@dataclass
class _Features:
    """A method seen by ``Trainer.predict`` as one whose output is its backbone's features."""

    model: nn.Module
    info: DatasetInfo

    def predict_batch(self, x: torch.Tensor) -> Outputs:
        return Outputs(features=self.model.backbone(x))


def extract_features(method: Method, split: Split, trainer: Trainer) -> torch.Tensor:
    """Penultimate features of ``split`` (evaluation transform, eval mode), on the device,
    float32; through ``Trainer.predict``, so in-memory and on-disk splits both work."""
    return trainer.predict(_Features(method.model, method.info), split, desc="features").features


def retrain_head(
    method: Method,
    split: Split,
    trainer: Trainer,
    params: Iterable[nn.Parameter],
    logits_fn: Callable[[torch.Tensor], torch.Tensor],
    *,
    epochs: int,
    lr: float,
) -> None:
    """Decoupling's stage 2 (Kang et al. 2020, §4): the backbone is frozen (eval mode, no grad);
    only ``params`` are trained with cross-entropy on ``logits_fn(features)`` under
    class-balanced sampling, SGD (the protocol's momentum, weight decay, batch size and
    augmentation), cosine learning rate from ``lr`` over ``epochs`` (10 in the paper).

    Images on disk (ImageNet-LT): the features of the training images are extracted once with
    the evaluation transform and re-sampled from memory, i.e. stage 2 sees no augmentation
    there (one pass over the images instead of ``epochs``)."""
    hp, device = method.hp, trainer.device
    params = list(params)
    backbone = method.model.backbone
    backbone.eval()
    for p in backbone.parameters():
        p.requires_grad_(False)
    opt = torch.optim.SGD(params, lr=lr, momentum=hp.momentum, weight_decay=hp.weight_decay)
    y_all = split.labels.to(device)
    gen = torch.Generator(device=device).manual_seed(trainer.seed + 7919)
    if isinstance(split.inputs, torch.Tensor):
        x_all = split.inputs.to(device)

        def features_of(idx: torch.Tensor) -> torch.Tensor:
            x = trainer.normalise(trainer.augment(x_all[idx], hp.augment, gen), method.info)
            with torch.no_grad(), autocast(device):
                return backbone(x).float()

    else:
        cached = extract_features(method, split, trainer)

        def features_of(idx: torch.Tensor) -> torch.Tensor:
            return cached[idx]

    n = len(split)
    bs = min(hp.batch_size, n)
    for epoch in range(epochs):
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * epoch / max(1, epochs)))
        idx_all = class_balanced_indices(y_all, n, gen)
        for s in range(n // bs):
            idx = idx_all[s * bs : (s + 1) * bs]
            features = features_of(idx)
            loss = F.cross_entropy(logits_fn(features), y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
