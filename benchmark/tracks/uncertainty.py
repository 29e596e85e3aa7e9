"""Building blocks of the trained uncertainty methods of the OoD track: DUQ's RBF head, centroid
update and gradient penalty, SDE-Net's drift / diffusion nets and Euler–Maruyama step, the
belief-matching loss, per-tensor gradient clipping and the scores of a predictive distribution.
Each is a plain function or module with the paper's formula in its docstring; the method plugins
(``methods/duq.py``, ``sde_net.py``, ``belief_matching.py``, ``mc_dropout.py``,
``deep_ensemble.py``) are recipes built from them. Specs: ``specs/methods.md`` §4–6,
``specs/baselines.md`` §13–14.

Notation: ``x`` inputs (B, C, H, W), ``f`` features (B, d), ``y`` labels (B,), ``C`` classes.
Every OoD score is "higher = more in-distribution", as ``metrics/ood.py`` expects.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from benchmark import distributed
from benchmark.method import Method
from benchmark.outputs import Outputs

#: the OoD scores of a predictive distribution ``p`` (B, C): max probability or −entropy
PROB_SCORES = ("msp", "entropy")


class UncertaintyMethod(Method):
    """Shared base of the trained uncertainty methods: the OoD track only."""

    tracks = ("ood",)


def prob_score(probs: torch.Tensor, kind: str) -> torch.Tensor:
    """OoD score (B,) of class probabilities ``probs`` (B, C), higher = more in-distribution:
    ``"msp"`` max_c p_c (Hendrycks & Gimpel 2017), ``"entropy"`` −H[p] = Σ_c p_c log p_c (nats).
    Raises ``ValueError`` for another ``kind``."""
    if kind == "msp":
        return probs.max(dim=1).values
    if kind == "entropy":
        return (probs * probs.clamp_min(1e-12).log()).sum(dim=1)
    raise ValueError(f"unknown probability score {kind!r} (choose from {PROB_SCORES})")


def prob_outputs(probs: torch.Tensor, score: str, kind: str, **extra: torch.Tensor) -> Outputs:
    """Outputs of a method whose prediction is an average of distributions ``probs`` (B, C):
    logits = log p (so that softmax(logits) = p), ``probs_`` = p, the ``score`` as OoD score."""
    probs = probs.float()
    return Outputs(
        logits=probs.clamp_min(1e-12).log(),
        probs_=probs,
        ood_score=prob_score(probs, score),
        ood_score_kind=f"{kind}-{score}",
        **extra,
    )


# -- DUQ (van Amersfoort et al., ICML 2020) ----------------------------------------------------
def rbf_log_kernel(z: torch.Tensor, centroids: torch.Tensor, length_scale: float) -> torch.Tensor:
    """log K_c = −(1/n)·‖z_c − e_c‖² / (2σ²) (B, C), ≤ 0: finite where K underflows to 0."""
    sq = (z - centroids.unsqueeze(0)).pow(2).mean(dim=1)
    return -sq / (2 * length_scale**2)


def rbf_kernel(z: torch.Tensor, centroids: torch.Tensor, length_scale: float) -> torch.Tensor:
    """DUQ's kernel (§4.1): ``K_c = exp(−(1/n)·‖z_c − e_c‖² / (2σ²))``, the **mean** of the
    squared differences over the n embedding dimensions. ``z`` (B, n, C) class embeddings,
    ``centroids`` (n, C), ``length_scale`` σ > 0. Returns (B, C) in [0, 1]."""
    return rbf_log_kernel(z, centroids, length_scale).exp()


def ema_centroid_update(
    counts: torch.Tensor,
    sums: torch.Tensor,
    z: torch.Tensor,
    onehot: torch.Tensor,
    gamma: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DUQ's centroid update (§4.1): ``N_c ← γN_c + (1−γ)·#{i: y_i = c}`` and
    ``m_c ← γm_c + (1−γ)·Σ_{i: y_i=c} z_c(x_i)``; the centroids are ``e_c = m_c / N_c``.
    ``counts`` (C,), ``sums`` (n, C), ``z`` (B, n, C), ``onehot`` (B, C) float. Returns the
    new (counts, sums); the inputs are not modified."""
    new_counts = gamma * counts + (1 - gamma) * onehot.sum(dim=0)
    new_sums = gamma * sums + (1 - gamma) * torch.einsum("bnc,bc->nc", z, onehot)
    return new_counts, new_sums


def gradient_penalty(x: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    """DUQ's two-sided penalty (§4.2): ``mean_i (‖∇_x Σ_c K_c(x_i)‖₂ − 1)²``. ``x`` (B, ...) the
    input that requires grad, ``output`` (B,) = Σ_c K_c(x). The gradient is taken with
    ``create_graph=True`` (the penalty is trained through); flattened per sample."""
    (grad,) = torch.autograd.grad(output.sum(), x, create_graph=True)
    return (grad.flatten(1).norm(2, dim=1) - 1).pow(2).mean()


class RBFHead(nn.Module):
    """DUQ's output layer: per-class embeddings ``z_c = W_c f`` (W: (n, C, d)) and centroids
    ``e_c = m_c / N_c`` kept as buffers and updated by ``update`` (not by the optimiser).

    ``init="mnist"``: W ~ N(0, 0.05²), N_c = 12, m ~ N(0, 1)·12 (the FashionMNIST code);
    ``init="cifar"``: W Kaiming-normal, N_c = 13, m ~ N(0, 0.05²)·13 (the CIFAR code)."""

    def __init__(
        self,
        feature_dim: int,
        num_classes: int,
        centroid_size: int,
        length_scale: float,
        gamma: float,
        init: str = "mnist",
    ) -> None:
        super().__init__()
        self.length_scale, self.gamma = length_scale, gamma
        w = torch.empty(centroid_size, num_classes, feature_dim)
        if init == "cifar":
            nn.init.kaiming_normal_(w, nonlinearity="relu")
            n0, m = 13.0, torch.randn(centroid_size, num_classes) * 0.05
        else:
            nn.init.normal_(w, 0.0, 0.05)
            n0, m = 12.0, torch.randn(centroid_size, num_classes)
        self.weight = nn.Parameter(w)
        self.register_buffer("counts", torch.full((num_classes,), n0))
        self.register_buffer("sums", m * n0)

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        """Class embeddings (B, n, C) of features (B, d)."""
        return torch.einsum("bd,ncd->bnc", features, self.weight)

    def centroids(self) -> torch.Tensor:
        """e_c = m_c / N_c, (n, C)."""
        return self.sums / self.counts.unsqueeze(0)

    def kernel(self, z: torch.Tensor) -> torch.Tensor:
        return rbf_kernel(z, self.centroids(), self.length_scale)

    def log_kernel(self, features: torch.Tensor) -> torch.Tensor:
        """log K (B, C) of features (B, d) (``rbf_log_kernel``)."""
        return rbf_log_kernel(self.embed(features), self.centroids(), self.length_scale)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Kernel values K (B, C) in (0, 1]."""
        return self.kernel(self.embed(features))

    @torch.no_grad()
    def update(self, features: torch.Tensor, onehot: torch.Tensor) -> None:
        """One EMA step of the centroids on a batch (``ema_centroid_update``)."""
        z = self.embed(features.float())
        counts, sums = ema_centroid_update(self.counts, self.sums, z, onehot, self.gamma)
        self.counts.copy_(counts)
        self.sums.copy_(sums)


# -- SDE-Net (Kong, Sun, Zhang, ICML 2020) -----------------------------------------------------
def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm(min(32, C), C), as in the SDE-Net code."""
    return nn.GroupNorm(min(32, channels), channels)


class ConcatConv2d(nn.Module):
    """3×3 convolution (padding 1) of the map with a constant channel equal to t prepended."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin + 1, cout, 3, padding=1)

    def forward(self, t: float, h: torch.Tensor) -> torch.Tensor:
        tt = torch.full_like(h[:, :1], float(t))
        return self.conv(torch.cat([tt, h], dim=1))


class Drift(nn.Module):
    """f(h, t): GN → ReLU → ConcatConv(t) → GN → ReLU → ConcatConv(t) → GN (§5.1)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = group_norm(width), ConcatConv2d(width, width)
        self.norm2, self.conv2 = group_norm(width), ConcatConv2d(width, width)
        self.norm3 = group_norm(width)

    def forward(self, t: float, h: torch.Tensor) -> torch.Tensor:
        out = self.conv1(t, F.relu(self.norm1(h)))
        out = self.conv2(t, F.relu(self.norm2(out)))
        return self.norm3(out)


class Diffusion(nn.Module):
    """g(h0) ∈ (0, 1) per sample (B, 1): [GN → ReLU → ConcatConv(t=0)] × ``blocks`` → GN → ReLU →
    global average pool → Linear(width → 1) → sigmoid (§5.1; 2 blocks for MNIST, 3 for SVHN)."""

    def __init__(self, width: int, blocks: int = 2) -> None:
        super().__init__()
        self.norms = nn.ModuleList(group_norm(width) for _ in range(blocks))
        self.convs = nn.ModuleList(ConcatConv2d(width, width) for _ in range(blocks))
        self.norm = group_norm(width)
        self.fc = nn.Linear(width, 1)

    def forward(self, h: torch.Tensor, t: float = 0.0) -> torch.Tensor:
        for norm, conv in zip(self.norms, self.convs):
            h = conv(t, F.relu(norm(h)))
        h = F.relu(self.norm(h)).mean(dim=(2, 3))
        return torch.sigmoid(self.fc(h))


def euler_maruyama_step(
    h: torch.Tensor,
    t: float,
    dt: float,
    drift: Callable[[float, torch.Tensor], torch.Tensor],
    g: torch.Tensor,
    sigma_max: float,
    noise: torch.Tensor,
) -> torch.Tensor:
    """One Euler–Maruyama step of SDE-Net (§5.1):
    ``h_{i+1} = h_i + f(h_i, t_i)·Δt + σ_max·g(h0)·√Δt·ε``.

    ``h`` (B, ...) state, ``t`` time t_i, ``dt`` Δt > 0, ``drift`` f(t, h) -> same shape as h,
    ``g`` (B, 1) diffusion of each sample (broadcast over the state), ``noise`` ε like ``h``."""
    scale = (sigma_max * math.sqrt(dt)) * g.view(-1, *([1] * (h.dim() - 1)))
    return h + drift(t, h) * dt + scale * noise


class SDENet(nn.Module):
    """SDE-Net for images (§5.1): downsampling D → N Euler–Maruyama steps of the drift with the
    diffusion g(D(x)) → head (GN → ReLU → GAP → Linear). T = ``layer_depth`` so Δt = 1.

    Downsampling: Conv3×3(c→w, no pad) → GN → ReLU → Conv4×4/2(p1) → GN → ReLU → Conv4×4/2(p1):
    28 → 26 → 13 → 6, 32 → 30 → 15 → 7. Init: convs Kaiming-normal (fan_out), Linear
    N(0, 1e-3²), zero biases."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        width: int = 64,
        layer_depth: int = 6,
        diffusion_blocks: int = 2,
    ) -> None:
        super().__init__()
        self.layer_depth = layer_depth
        self.dt = 6.0 / layer_depth if layer_depth else 0.0  # T = 6 in the paper's code
        self.downsample = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, 1),
            group_norm(width),
            nn.ReLU(),
            nn.Conv2d(width, width, 4, 2, 1),
            group_norm(width),
            nn.ReLU(),
            nn.Conv2d(width, width, 4, 2, 1),
        )
        self.drift = Drift(width)
        self.diffusion = Diffusion(width, diffusion_blocks)
        self.head = nn.Sequential(
            group_norm(width),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(width, num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 1e-3)
                nn.init.zeros_(m.bias)

    def drift_parameters(self) -> list[nn.Parameter]:
        """Downsampling, drift and head: the first optimiser's parameters."""
        mods: Iterable[nn.Module] = (self.downsample, self.drift, self.head)
        return [p for m in mods for p in m.parameters()]

    def solve(
        self, h0: torch.Tensor, g: torch.Tensor, sigma_max: float, gen: torch.Generator | None
    ) -> torch.Tensor:
        """The state after ``layer_depth`` steps from h0 (fresh noise each step from ``gen``)."""
        h = h0
        for i in range(self.layer_depth):
            noise = torch.randn(h.shape, generator=gen, device=h.device, dtype=h.dtype)
            h = euler_maruyama_step(h, i * self.dt, self.dt, self.drift, g, sigma_max, noise)
        return h

    def forward(
        self, x: torch.Tensor, sigma_max: float, gen: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (B, C), g(h0) (B, 1)) of one stochastic pass."""
        h0 = self.downsample(x)
        g = self.diffusion(h0)
        return self.head(self.solve(h0, g, sigma_max, gen)), g


# -- belief matching (Joo, Chung, Seo, ICML 2020) ----------------------------------------------
def dirichlet_kl(alpha: torch.Tensor, prior: float) -> torch.Tensor:
    """KL(Dir(α) ‖ Dir(β·1)) per sample (B,) **without** the constant ``−log Γ(β0) + Σ log Γ(β_k)``
    (as the paper's ``loss.py``): ``log Γ(α0) − Σ_k log Γ(α_k) + Σ_k (α_k − β)(ψ(α_k) − ψ(α0))``.
    ``alpha`` (B, C) > 0."""
    a0 = alpha.sum(dim=1, keepdim=True)
    cross = ((alpha - prior) * (torch.digamma(alpha) - torch.digamma(a0))).sum(dim=1)
    return torch.lgamma(a0.squeeze(1)) - torch.lgamma(alpha).sum(dim=1) + cross


def belief_matching_loss(
    logits: torch.Tensor, y: torch.Tensor, prior: float = 1.0, coeff: float = 0.01
) -> torch.Tensor:
    """Negative ELBO of belief matching (§6.1), averaged over the batch:
    ``mean_i[coeff·KL(Dir(α_i) ‖ Dir(β)) − (ψ(α_{i,y_i}) − ψ(α_{i,0}))]`` with ``α = exp(logits)``
    (computed in float32), β = ``prior``. ``logits`` (B, C), ``y`` (B,) int64."""
    alpha = logits.float().exp()
    a0 = alpha.sum(dim=1)
    ell = torch.digamma(alpha.gather(1, y.view(-1, 1)).squeeze(1)) - torch.digamma(a0)
    return (coeff * dirichlet_kl(alpha, prior) - ell).mean()


def clip_each_tensor_(params: Iterable[torch.Tensor], max_norm: float) -> None:
    """Clip the gradient of **each parameter tensor separately** to L2 norm ``max_norm`` (the
    belief-matching code calls ``clip_grad_norm_`` per parameter), in place."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    norms = torch._foreach_norm(grads)
    scales = [(max_norm / (n + 1e-6)).clamp(max=1.0) for n in norms]
    torch._foreach_mul_(grads, scales)


def step_with_per_tensor_clip(
    method: Method, optimizer: torch.optim.Optimizer, loss: torch.Tensor, max_norm: float
) -> None:
    """Zero, backward, average the gradients over the ranks, clip each tensor to ``max_norm``
    (0: off), step: ``Trainer.step`` with per-tensor instead of total-norm clipping."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    assert method.model is not None
    distributed.average_gradients(method.model)
    if max_norm > 0:
        clip_each_tensor_([p for g in optimizer.param_groups for p in g["params"]], max_norm)
    optimizer.step()


# -- MC dropout (Gal & Ghahramani, ICML 2016) --------------------------------------------------
class DropoutHead(nn.Module):
    """Dropout(p) on the penultimate features, then a linear layer. In training mode the mask
    comes from ``nn.Dropout``; ``sample`` draws masks from a given generator (MC dropout)."""

    def __init__(self, feature_dim: int, num_classes: int, p: float) -> None:
        super().__init__()
        self.p = p
        self.dropout = nn.Dropout(p)
        self.linear = nn.Linear(feature_dim, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(self.dropout(features))

    def sample(
        self, features: torch.Tensor, samples: int, gen: torch.Generator | None
    ) -> torch.Tensor:
        """Mean softmax (B, C) over ``samples`` dropout masks (inverted dropout, keep 1 − p)."""
        probs = torch.zeros(len(features), self.linear.out_features, device=features.device)
        for _ in range(samples):
            keep = torch.rand(features.shape, generator=gen, device=features.device) >= self.p
            kept = features * keep / (1 - self.p) if self.p < 1 else features * 0
            probs += torch.softmax(self.linear(kept).float(), dim=1)
        return probs / samples
