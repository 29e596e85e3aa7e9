"""Building blocks of the post-hoc OoD detectors and calibrators: scores, feature taps, Gaussian
fitting, Gram-matrix features, nearest neighbours, temperature fitting.

Every score follows the bench convention **higher = more in-distribution** (``metrics/ood.py``).
Notation: ``z`` logits (N, C), ``h`` penultimate features (N, D), ``y`` labels (N,).

The detector plugins in ``methods/`` (``msp``, ``odin``, ``energy``, ``mahalanobis``, ``gram``,
``knn``, ``react``, ``temperature-scaling``) are recipes built from these functions on one
trained base (``PostHocDetector``: default ``erm``, ``--set base=NAME``): the base is trained
once (its cached checkpoint) and every detector and every setting of its knobs reuses it.
Statistics (class means, Gram bounds, the kNN bank, ReAct's clip, the temperature) are fitted
by ``calibrate`` on the ``train`` / ``val`` splits only, never on ``test`` or an OoD split.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.errors import BenchError
from benchmark.method import Method
from benchmark.outputs import Outputs

if TYPE_CHECKING:
    from benchmark.dataset import Bundle, DatasetInfo, Split
    from benchmark.training import Trainer


# -- scores on logits ------------------------------------------------------------------------
def msp_score(z: torch.Tensor) -> torch.Tensor:
    """Maximum softmax probability (Hendrycks & Gimpel, ICLR 2017): ``max_c softmax(z)_c``,
    (N, C) -> (N,), float32."""
    return torch.softmax(z.float(), dim=1).max(dim=1).values


def energy_score(z: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Negative free energy (Liu et al., NeurIPS 2020, Eq. 1): ``T · logsumexp_c(z_c / T)``,
    (N, C) -> (N,). The energy repo stores ``E = −this`` (larger = OoD); here larger = ID."""
    return temperature * torch.logsumexp(z.float() / temperature, dim=1)


def odin_inputs(
    logits_fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    temperature: float,
    epsilon: float,
    std: Sequence[float],
) -> torch.Tensor:
    """ODIN's input pre-processing (Liang et al., ICLR 2018, Eq. 2; ``calData.py``):
    ``x̃ = x − ε · sign(∇_x CE(f(x)/T, ŷ)) / σ_channel`` with ŷ the predicted class, i.e. a step
    of ε in [0, 1] pixel units that raises the temperature-scaled max softmax. ``x`` is the
    normalised batch (N, C, H, W); ``std`` the dataset's per-channel std. Gradients are taken
    in float32 with the model as it is (eval mode); returns the detached perturbed batch."""
    with torch.enable_grad(), torch.autocast(x.device.type, enabled=False):
        xg = x.detach().float().requires_grad_(True)
        z = logits_fn(xg).float()
        loss = F.cross_entropy(z / temperature, z.argmax(1))
        (grad,) = torch.autograd.grad(loss, xg)
    scale = torch.tensor(std, device=x.device, dtype=torch.float32).view(1, -1, 1, 1)
    return (xg - epsilon * grad.sign() / scale).detach()


# -- Gaussian (Mahalanobis) ------------------------------------------------------------------
@dataclass
class TiedGaussian:
    """Class-conditional Gaussians with one shared covariance: ``means`` (C, D) and
    ``precision`` (D, D), float64; ``present`` (C,) bool marks classes with training samples."""

    means: torch.Tensor
    precision: torch.Tensor
    present: torch.Tensor
    condition: float


def fit_tied_gaussian(h: torch.Tensor, y: torch.Tensor, num_classes: int) -> TiedGaussian:
    """Class means and the pooled within-class covariance (Lee et al., NeurIPS 2018, §2;
    ``sample_estimator``): the MLE covariance (divided by N) of ``h_i − μ_{y_i}``, inverted by
    pseudo-inverse in float64. ``h`` (N, D), ``y`` (N,) true labels of the training split."""
    h = h.double()
    counts = torch.bincount(y, minlength=num_classes).to(h.device)
    sums = torch.zeros(num_classes, h.shape[1], dtype=h.dtype, device=h.device)
    sums.index_add_(0, y, h)
    present = counts > 0
    means = sums / counts.clamp_min(1)[:, None]
    centred = h - means[y]
    centred = centred - centred.mean(0)  # EmpiricalCovariance re-centres (a no-op in theory)
    cov = centred.T @ centred / len(h)
    precision = torch.linalg.pinv(cov, hermitian=True)
    eig = torch.linalg.eigvalsh(cov)
    condition = float(eig[-1] / eig[0].abs().clamp_min(1e-300)) if len(eig) else 1.0
    return TiedGaussian(means, precision, present, condition)


def mahalanobis_distances(h: torch.Tensor, g: TiedGaussian) -> torch.Tensor:
    """Squared Mahalanobis distances ``(h − μ_c)ᵀ Σ⁻¹ (h − μ_c)``, (N, D) -> (N, C), float64;
    +inf for classes without training samples."""
    h = h.double()
    hp = h @ g.precision
    mp = g.means @ g.precision
    d = (hp * h).sum(1, keepdim=True) - 2 * hp @ g.means.T + (mp * g.means).sum(1)[None]
    return d.masked_fill(~g.present[None], math.inf)


def mahalanobis_score(h: torch.Tensor, g: TiedGaussian) -> torch.Tensor:
    """Mahalanobis confidence score (Lee et al. 2018, Eq. 2): ``max_c −½ d²_c(h)``, (N,)."""
    return -0.5 * mahalanobis_distances(h, g).min(dim=1).values


# -- k nearest neighbours --------------------------------------------------------------------
def unit_rows(h: torch.Tensor) -> torch.Tensor:
    """``h / (‖h‖₂ + 1e-10)`` row-wise (Sun et al. 2022, §3), float64 (the distances below are
    taken by expanding the square, which cancels in float32 for near neighbours)."""
    h = h.double()
    return h / (h.norm(dim=1, keepdim=True) + 1e-10)


def knn_score(query: torch.Tensor, bank: torch.Tensor, k: int, chunk: int = 1024) -> torch.Tensor:
    """Deep nearest-neighbour score (Sun, Ming, Zhu, Li, ICML 2022, Eq. 3): ``−‖z − z_(k)‖₂``,
    the negated distance from each normalised query row to its k-th nearest row of the
    normalised bank; ``query`` (N, D), ``bank`` (M, D) already normalised, 1 ≤ k ≤ M."""
    if not 1 <= k <= len(bank):
        raise BenchError(f"knn: k={k} needs 1 ≤ k ≤ the bank's {len(bank)} training features")
    out = []
    bank = bank.double()
    bank_sq = (bank * bank).sum(1)
    for start in range(0, len(query), chunk):
        q = query[start : start + chunk].double()
        d2 = (q * q).sum(1, keepdim=True) - 2 * q @ bank.T + bank_sq[None]
        kth = torch.topk(d2, k, dim=1, largest=False).values[:, -1]
        out.append(-kth.clamp_min(0).sqrt())
    return torch.cat(out) if out else query.new_zeros(0)


# -- ReAct -------------------------------------------------------------------------------------
def percentile(values: torch.Tensor, q: float) -> float:
    """The q-th percentile (0–100) of all entries, linear interpolation (numpy's default)."""
    return float(np.percentile(values.detach().double().cpu().numpy().ravel(), q))


# -- temperature scaling ---------------------------------------------------------------------
def _temperature_nll_slope(z: torch.Tensor, y: torch.Tensor, beta: float) -> float:
    """d NLL / d β of ``softmax(β z)`` at the inverse temperature β (float64):
    ``mean_i (Σ_c softmax(β z_i)_c z_ic − z_{i,y_i})``. The NLL is convex in β (a log-sum-exp
    of linear functions minus a linear one), so this slope is non-decreasing in β."""
    p = torch.softmax(beta * z, dim=1)
    return float(((p * z).sum(1) - z.gather(1, y.view(-1, 1)).squeeze(1)).mean())


def fit_temperature(
    z: torch.Tensor, y: torch.Tensor, max_iter: int = 200, tolerance: float = 1e-4
) -> float:
    """Temperature scaling (Guo et al., ICML 2017, §4.2): the T > 0 minimising the NLL of
    ``softmax(z / T)`` on held-out logits ``z`` (N, C) with labels ``y``. Optimises log T with
    L-BFGS from T = 1.5 (the reference code's start) in float64, then checks convergence: T
    in [1e-3, 1e3] and the NLL's slope in log T within ``tolerance``. If not, a
    ``RuntimeWarning`` says so and T is found instead by bisection of the slope in β = 1/T
    (the NLL is convex in β) over T ∈ [1e-3, 1e3]. When the minimum lies outside that range
    (e.g. perfectly separated logits, whose NLL falls as T → 0) a warning says so and T = 1."""
    z, y = z.detach().double().cpu(), y.detach().cpu()
    log_t = torch.tensor([math.log(1.5)], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [log_t], lr=0.1, max_iter=max_iter, tolerance_grad=1e-10, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.detach().exp())
    # d NLL / d log T = −β · d NLL / d β
    lo, hi = 1e-3, 1e3  # the β = 1/T range, i.e. T in [1e-3, 1e3]
    if _temperature_nll_slope(z, y, lo) >= 0 or _temperature_nll_slope(z, y, hi) <= 0:
        warnings.warn(
            f"temperature scaling: the NLL on val has no minimum for T in [1e-3, 1e3] "
            f"(L-BFGS stopped at T = {t:.4g}; e.g. perfectly separated val logits): "
            "T = 1, the logits are left as they are",
            RuntimeWarning,
            stacklevel=2,
        )
        return 1.0
    if lo <= t <= hi and abs(_temperature_nll_slope(z, y, 1 / t) / t) <= tolerance:
        return t
    warnings.warn(
        f"temperature scaling: L-BFGS did not converge (T = {t:.4g}, |dNLL/dlogT| above "
        f"{tolerance:g}); T found by bisection instead",
        RuntimeWarning,
        stacklevel=2,
    )
    for _ in range(200):  # geometric bisection: 200 halvings of log(hi/lo) reach float64 eps
        mid = math.sqrt(lo * hi)
        if _temperature_nll_slope(z, y, mid) < 0:
            lo = mid
        else:
            hi = mid
        if hi / lo - 1 < 1e-12:
            break
    return 2 / (lo + hi)


# -- feature taps and Gram features ----------------------------------------------------------
def gram_tap_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The layers whose outputs the Gram detector records (Sastry & Oore 2020, §3 and their
    ResNet code record every conv, BN, shortcut and block output): every ``Conv2d`` and
    ``BatchNorm2d``, and every block, i.e. a module with ``conv1`` and ``conv2`` (a ResNet
    basic block, whose output is after the residual ReLU) or a ``Sequential`` ending in a
    ``ReLU`` (a conv-BN-ReLU unit). Order: ``model.named_modules()``."""
    out = []
    for name, m in model.named_modules():
        block = (hasattr(m, "conv1") and hasattr(m, "conv2")) or (
            isinstance(m, nn.Sequential) and len(m) and isinstance(m[-1], nn.ReLU)
        )
        if isinstance(m, (nn.Conv2d, nn.BatchNorm2d)) or block:
            out.append((name, m))
    return out


#: float64 elements per chunk of ``gram_rowsums`` on the CPU (512 kB: stays in cache)
CPU_CHUNK_ELEMENTS = 2**16


def gram_rowsums(fmap: torch.Tensor, powers: int) -> torch.Tensor:
    """Gram features of one layer (Sastry & Oore, ICML 2020, §3.1): for each order p = 1..P,
    the row sums of ``G_p = F^p (F^p)ᵀ`` (F the (C, HW) map, elementwise power), then the
    signed p-th root. ``fmap`` (N, C, H, W) -> (N, P, C), float64.

    Uses ``Σ_k G_p[c, k] = Σ_s F^p[c, s] · Σ_k F^p[k, s]``: O(C·HW) per order instead of the
    C × C matrix product, as a broadcast product and a contiguous sum (a batched
    matrix-vector product runs several times slower on the CPU); the roots of all orders at
    once at the end."""
    flat = fmap.detach().flatten(2)
    n, c, hw = flat.shape
    out = torch.empty(n, powers, c, dtype=torch.float64, device=flat.device)
    # on the CPU, chunks of samples small enough to stay in cache (the ops are memory-bound)
    step = n if flat.is_cuda else max(1, CPU_CHUNK_ELEMENTS // max(1, c * hw))
    for start in range(0, n, step):
        f = flat[start : start + step].double()
        fp = f
        rows = out[start : start + step]
        for p in range(1, powers + 1):
            if p == 2:
                fp = f * f
            elif p > 2:
                fp.mul_(f)  # in place: no map-sized temporaries per order
            torch.sum(fp * fp.sum(1, keepdim=True), 2, out=rows[:, p - 1])
    roots = 1.0 / torch.arange(1, powers + 1, dtype=torch.float64, device=out.device)
    return out.sign() * out.abs().pow(roots[None, :, None])


@contextmanager
def recording(
    modules: Sequence[nn.Module], fn: Callable[[torch.Tensor], torch.Tensor]
) -> Iterator[list[torch.Tensor]]:
    """Forward hooks on ``modules`` that append ``fn(output)`` to the yielded list, in call
    order, computed at once (so an in-place ReLU that follows cannot change it); removed on
    exit. Clear the list between batches."""
    store: list[torch.Tensor] = []
    handles = [m.register_forward_hook(lambda _m, _i, o: store.append(fn(o))) for m in modules]
    try:
        yield store
    finally:
        for handle in handles:
            handle.remove()


@dataclass
class GramBounds:
    """Per predicted class, per feature (layer × order × channel) min and max over the
    training split: ``mins``/``maxs`` (K, D) float64; ``layer_of`` (D,) the layer index of each
    feature; ``expected`` (L,) the mean deviation per layer on ``val`` (set by the caller)."""

    mins: torch.Tensor
    maxs: torch.Tensor
    layer_of: torch.Tensor
    num_layers: int
    expected: torch.Tensor | None = None


def gram_bounds(
    features: Iterator[tuple[torch.Tensor, torch.Tensor]], num_classes: int
) -> GramBounds:
    """Gram bounds (Sastry & Oore 2020, §3.2): over batches of (per-layer Gram features
    [(N, P, C_l), ...], predicted classes (N,)), the per-class elementwise min and max.
    A class no training sample was predicted as gets the bounds over all classes."""
    mins = maxs = layer_of = None
    num_layers = 0
    for layers, pred in features:
        v = torch.cat([t.flatten(1) for t in layers], dim=1)
        if mins is None:
            d = v.shape[1]
            mins = torch.full((num_classes, d), math.inf, dtype=v.dtype, device=v.device)
            maxs = torch.full((num_classes, d), -math.inf, dtype=v.dtype, device=v.device)
            sizes = torch.tensor([t[0].numel() for t in layers], device=v.device)
            layer_of = torch.repeat_interleave(torch.arange(len(layers), device=v.device), sizes)
            num_layers = len(layers)
        idx = pred.to(v.device)[:, None].expand_as(v)
        mins.scatter_reduce_(0, idx, v, "amin", include_self=True)
        maxs.scatter_reduce_(0, idx, v, "amax", include_self=True)
    if mins is None:
        raise BenchError("gram: the training split is empty")
    seen = torch.isfinite(mins[:, 0])
    if not seen.any():
        raise BenchError("gram: no training features were recorded")
    mins[~seen] = mins[seen].min(0).values
    maxs[~seen] = maxs[seen].max(0).values
    return GramBounds(mins, maxs, layer_of, num_layers)


def gram_deviations(
    layers: Sequence[torch.Tensor], pred: torch.Tensor, conf: torch.Tensor, b: GramBounds
) -> torch.Tensor:
    """Per-layer deviations (Sastry & Oore 2020, §3.3): for the bounds of the predicted class,
    ``δ_L = Σ_{p,j} [ReLU(min − v)/|min + 1e-6| + ReLU(v − max)/|max + 1e-6|] / conf``, with
    ``conf`` the max softmax probability. (N, L) float64."""
    v = torch.cat([t.flatten(1) for t in layers], dim=1)
    lo, hi = b.mins[pred], b.maxs[pred]
    dev = F.relu(lo - v) / (lo + 1e-6).abs() + F.relu(v - hi) / (hi + 1e-6).abs()
    out = torch.zeros(len(v), b.num_layers, dtype=v.dtype, device=v.device)
    out.index_add_(1, b.layer_of, dev)
    return out / conf.double()[:, None]


def gram_score(deviations: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
    """Total deviation, negated (Sastry & Oore 2020, §3.3): ``−Σ_L δ_L / E_L``; (N, L) -> (N,)."""
    return -(deviations / expected[None]).sum(1)


# -- the post-hoc detector base ----------------------------------------------------------------
@dataclass
class _Probe:
    """Seen by ``Trainer.predict`` as a method whose outputs are ``fn(x)``."""

    model: nn.Module
    info: DatasetInfo
    fn: Callable[[torch.Tensor], Outputs]

    def predict_batch(self, x: torch.Tensor) -> Outputs:
        return self.fn(x)


def batches(split: Split, trainer: Trainer, batch_size: int | None = None) -> Iterator[Any]:
    """Normalised batches (evaluation transform, on the trainer's device) of an in-memory
    split; raises ``BenchError`` for images on disk."""
    if not isinstance(split.inputs, torch.Tensor):
        raise BenchError("this detector needs a split held in memory (not images on disk)")
    size = batch_size or trainer.eval_batch_size
    for start in range(0, len(split), size):
        yield start, split.inputs[start : start + size]


class PostHocDetector(Method):
    """Base of the post-hoc detectors: a trained base (default ``erm``; ``--set base=NAME``)
    whose ``predict_batch`` gives logits and penultimate features; nothing is retrained.
    Subclasses fit statistics in ``calibrate`` (train / val only) and override ``score``."""

    base = "erm"
    base_settable = True
    tracks = ("ood",)

    def adopt(self, base: Method) -> None:
        self.model = base.model
        self.base_ = base

    def base_outputs(self, x: torch.Tensor) -> Outputs:
        """The base's logits and features for a normalised batch (raises when it has none)."""
        out = self.base_.predict_batch(x)
        if out.logits is None or out.features is None:
            raise BenchError(f"{self.name} needs a base with logits and features")
        return out

    def outputs_over(self, split: Split, trainer: Trainer) -> Outputs:
        """The base's outputs over a whole split (eval mode, no gradients)."""
        probe = _Probe(self.model, self.info, self.base_outputs)
        return trainer.predict(probe, split, desc="features", name="features")

    def split(self, bundle: Bundle, name: str) -> Split:
        if name not in bundle.splits:
            raise BenchError(
                f"{self.name} fits on the '{name}' split, which {bundle.name} does not have"
            )
        return bundle.splits[name]

    def score(self, x: torch.Tensor, out: Outputs) -> torch.Tensor:
        """The detector's score (N,) for a normalised batch and the base's outputs on it."""
        return msp_score(out.logits)

    def predict_batch(self, x: torch.Tensor) -> Outputs:
        out = self.base_outputs(x)
        return Outputs(
            logits=out.logits,
            features=out.features,
            ood_score=self.score(x, out).float(),
            ood_score_kind=self.name,
        )


# -- the classic OoD pairs' protocol ---------------------------------------------------------
#: DUQ's CIFAR-10 recipe on the 3×3-stem ResNet-18 (van Amersfoort et al. 2020, Appendix A;
#: ``train_duq_cifar.py``): SGD lr 0.05, momentum 0.9, wd 5e-4, batch 128, 100 epochs, ×0.2 at
#: 25 / 50 / 75, random crop (pad 4) + flip. The CIFAR-10 OoD pairs' default protocol.
CIFAR_OOD_PROTOCOL: dict[str, Any] = {
    "backbone": "resnet18-cifar",
    "epochs": 100,
    "batch_size": 128,
    "optimizer": "sgd",
    "lr": 0.05,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "schedule": "multistep",
    "milestones": [25, 50, 75],
    "lr_decay": 0.2,
    "warmup_epochs": 0,
    "augment": "crop-flip",
}

#: DUQ's Fashion-MNIST recipe (``train_duq_fm.py``): its 3-conv CNN (``duq-cnn``), SGD lr 0.05,
#: momentum 0.9, wd 1e-4, batch 128, 30 epochs, ×0.2 at 10 / 20, no augmentation.
FASHION_OOD_PROTOCOL: dict[str, Any] = {
    "backbone": "duq-cnn",
    "epochs": 30,
    "batch_size": 128,
    "optimizer": "sgd",
    "lr": 0.05,
    "momentum": 0.9,
    "weight_decay": 1e-4,
    "schedule": "multistep",
    "milestones": [10, 20],
    "lr_decay": 0.2,
    "warmup_epochs": 0,
    "augment": "none",
}


def pair_options(n_val: int) -> dict[str, Any]:
    """The options of an OoD pair in this protocol: ``n_val`` (held-out val size), ``seed``."""
    from benchmark.hparams import SEED, HParam, Range

    return {
        "n_val": HParam(n_val, help="training images held out as val", valid=Range(1)),
        "seed": HParam(0, help="seed of the val hold-out", valid=SEED),
    }


def with_val(
    bundle: Bundle,
    n_val: int,
    seed: int,
    ood_split: str,
    *,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
) -> Bundle:
    """An OoD pair's bundle (``benchmark.readers.OoDPair``: ``train``, ``test``, ``ood``) in the
    track's protocol: ``n_val`` training images (a seeded permutation) held out as ``val``,
    where the post-hoc detectors fit their normalisation, clip or temperature; the OoD split
    renamed ``ood_split`` (``ood_near`` / ``ood_far``); optionally another normalisation (the
    OoD images always use the in-distribution one). Raises ``BenchError`` when ``n_val`` leaves
    no training image."""
    from benchmark.dataset import Bundle as _Bundle
    from benchmark.dataset import Split as _Split

    train = bundle.splits["train"]
    if not 0 < n_val < len(train):
        raise BenchError(f"{bundle.name}: n_val={n_val} must be in [1, {len(train) - 1}]")
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    val_idx, train_idx = perm[:n_val].sort().values, perm[n_val:].sort().values

    def take(idx: torch.Tensor) -> Split:
        attrs = {k: v[idx] for k, v in train.attrs.items()}
        return _Split(train.inputs[idx], train.labels[idx], attrs)

    ood = bundle.splits["ood"]
    splits = {"train": take(train_idx), "val": take(val_idx), "test": bundle.splits["test"]}
    splits[ood_split] = _Split(ood.inputs, ood.labels, ood.attrs, "test")
    return _Bundle(
        name=bundle.name,
        track=bundle.track,
        num_classes=bundle.num_classes,
        splits=splits,
        version=bundle.version,
        options=bundle.options,
        mean=mean or bundle.mean,
        std=std or bundle.std,
        class_names=bundle.class_names,
        eval_splits=("test", ood_split),
    )
