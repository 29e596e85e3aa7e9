"""Building blocks of the bias-track methods: the groups the group methods use, the
generalised cross-entropy (LfF), the online GroupDRO weights, the PGI penalty, Metadata
Normalization (the layer and the paper's CNN) and OccamNets (exits, CAM suppression, gates).
Each is a plain function or module with the paper's formula in its docstring; the method
plugins in ``methods/`` are recipes built from them.

Notation: ``z`` logits (B, C), ``y`` labels (B,), ``g`` group ids (B,) in [0, G).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.backbones import Backbone, _conv_bn, register_backbone
from benchmark.dataset import Dataset, provided_tracks
from benchmark.errors import BenchError
from benchmark.hparams import HParam
from benchmark.method import Method

if TYPE_CHECKING:
    from benchmark.dataset import Split
    from benchmark.training import Trainer

# -- groups ------------------------------------------------------------------------------
#: how the group methods form groups: ``class-aligned`` = class × (bias attribute agrees with
#: the class), 2 per class; ``attribute`` = the dataset's own ``group`` attribute; ``auto`` =
#: class-aligned when the dataset has ``aligned``, else ``group``
GROUPS_HPARAM = HParam(
    "auto",
    help="groups of the group methods: auto (class-aligned when the dataset has 'aligned'), "
    "class-aligned (class x aligned) or attribute (the dataset's 'group')",
    choices=("auto", "class-aligned", "attribute"),
)


def group_mode(mode: str, attrs: Mapping[str, Any] | tuple[str, ...]) -> str:
    """The concrete grouping (``class-aligned`` or ``attribute``) for a dataset's attributes;
    raises ``BenchError`` when the dataset lacks what the mode needs."""
    names = set(attrs)
    if mode == "auto":
        mode = "class-aligned" if "aligned" in names else "attribute"
    need = "aligned" if mode == "class-aligned" else "group"
    if need not in names:
        raise BenchError(f"groups={mode} needs a dataset attribute '{need}'")
    return mode


class Groups:
    """Group ids of samples under one grouping, fixed from the training split.

    ``class-aligned``: ``g = 2·y + aligned`` (G = 2C; on ``colored-mnist`` at ρ = 0.99 a class
    has 3–4 bias-conflicting digits over 9 colours, so the dataset's digit × colour groups are
    mostly empty or singletons). ``attribute``: the dataset's ``group`` values, renumbered
    0..G−1 in sorted order of the training values (a value unseen in training maps to the
    nearest index; only training batches are grouped).
    """

    def __init__(self, mode: str, train: Split, num_classes: int) -> None:
        self.mode = group_mode(mode, train.attrs)
        self.num_classes = num_classes
        if self.mode == "class-aligned":
            self.values = None
            self.num_groups = 2 * num_classes
        else:
            self.values = torch.unique(torch.as_tensor(train.attrs["group"]).long())
            self.num_groups = len(self.values)
        self.counts = torch.bincount(
            self.of(train.labels, train.attrs), minlength=self.num_groups
        ).double()

    def of(self, y: torch.Tensor, attrs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Group ids (B,) of samples with labels ``y`` and attributes ``attrs``."""
        y = torch.as_tensor(y).long()
        if self.mode == "class-aligned":
            return 2 * y + torch.as_tensor(attrs["aligned"]).to(y.device).long()
        values = self.values.to(y.device)
        idx = torch.searchsorted(values, torch.as_tensor(attrs["group"]).to(y.device).long())
        return idx.clamp_max(len(values) - 1)

    def describe(self) -> dict[str, Any]:
        return {"groups": self.mode, "num_groups": self.num_groups,
                "train_counts": [int(c) for c in self.counts]}  # fmt: skip


class GroupMethod(Method):
    """Base of the methods that use groups (``groups`` setting) on the training split: the
    bias track, datasets with an ``aligned`` or ``group`` attribute. ``self.groups`` is set
    in ``fit`` (training only: no group is needed at inference)."""

    tracks = ("bias",)
    hparams = {"groups": GROUPS_HPARAM}
    #: True: batches are drawn with probability ∝ 1/n_g (with replacement) by the trainer
    group_sampling: bool = False

    @classmethod
    def incompatibility(cls, dataset: type[Dataset]) -> str | None:
        if "bias" not in provided_tracks(dataset.track, dataset.attrs):
            return f"{cls.name} runs on the bias track, not {dataset.track}"
        if not {"aligned", "group"} & set(dataset.attrs):
            return f"{cls.name} needs an 'aligned' or 'group' attribute that {dataset.name} lacks"
        return None

    def __init__(self, info: Any, hp: Mapping[str, Any], device: torch.device) -> None:
        # the trainer reads ``sampler``: weighted sampling by ``sample_weights`` (1/n_g)
        hp = {**hp, "sampler": "weighted" if self.sampled(hp) else "uniform"}
        super().__init__(info, hp, device)
        self.groups: Groups | None = None

    def sampled(self, hp: Mapping[str, Any]) -> bool:
        """Whether batches are group-balanced by sampling (override per method)."""
        return self.group_sampling

    def fit(self, train: Split, trainer: Trainer) -> None:
        self.groups = Groups(self.hp.get("groups", "class-aligned"), train, self.info.num_classes)
        self.prepare(train)
        trainer.fit(self, train)

    def prepare(self, train: Split) -> None:
        """Hook: per-run state from the training split, before training."""

    def sample_weights(self, train: Split) -> torch.Tensor | None:
        """Inverse group frequency ``N / n_g`` (group_DRO ``--reweight_groups``)."""
        if not self.sampled(self.hp):
            return None
        assert self.groups is not None
        g = self.groups.of(train.labels, train.attrs)
        return (len(g) / self.groups.counts[g]).float()

    def batch_groups(self, batch: Any) -> torch.Tensor:
        assert self.groups is not None
        return self.groups.of(batch.y, batch.attrs)

    def summary(self) -> dict[str, Any]:
        return self.groups.describe() if self.groups is not None else {}


# -- losses ------------------------------------------------------------------------------
def generalized_ce(z: torch.Tensor, y: torch.Tensor, q: float = 0.7) -> torch.Tensor:
    """Generalised cross-entropy per sample (Zhang & Sabuncu 2018; LfF's biased model, Nam et
    al. 2020 Eq. 2): ``(1 − p_y^q) / q``. Its gradient is ``p_y^q · ∇(−log p_y)``: samples
    the model already fits get more weight. (LfF's code multiplies CE by ``q·p_y^q`` with
    ``p_y`` detached: the same gradient times ``q``.) Shape (B,)."""
    p = torch.softmax(z.float(), dim=1).gather(1, y[:, None]).squeeze(1)
    return (1.0 - p.clamp_min(1e-12).pow(q)) / q


def group_means(losses: torch.Tensor, g: torch.Tensor, num_groups: int) -> torch.Tensor:
    """Mean loss per group (G,); 0 for a group absent from the batch."""
    sums = torch.zeros(num_groups, dtype=losses.dtype, device=losses.device).index_add(0, g, losses)
    counts = torch.bincount(g, minlength=num_groups).to(losses.dtype)
    return sums / counts.clamp_min(1)


def groupdro_update(
    q: torch.Tensor,
    group_loss: torch.Tensor,
    eta: float,
    adjustment: torch.Tensor | None = None,
) -> torch.Tensor:
    """One online GroupDRO step (Sagawa et al. 2020, Algorithm 1; group_DRO
    ``compute_robust_loss``): ``q_g ← q_g · exp(η · (L̂_g + C_g/√n_g))``, then ``q /= Σ q``.
    ``adjustment`` is ``C_g/√n_g`` (G,) or None. Detached; returns the new q."""
    adjusted = group_loss.detach().double()
    if adjustment is not None:
        adjusted = adjusted + adjustment.double()
    q = q.double() * torch.exp(eta * adjusted)
    return (q / q.sum()).float()


def pgi_penalty(
    probs: torch.Tensor, y: torch.Tensor, minority: torch.Tensor, num_classes: int
) -> torch.Tensor:
    """Predictive group invariance (Ahmed et al. 2021; ``mnist/main.py``): for each class c
    with both partitions in the batch, ``p̄_maj`` and ``p̄_min`` = mean softmax vectors of its
    majority and minority samples (clipped to [1e-12, 1 − 1e-12]),
    ``(1/K) Σ_k p̄_min,k log(p̄_min,k / p̄_maj,k)`` (KL(minority ‖ majority) / K); summed over
    the classes. ``minority`` (B,) bool."""
    total = probs.new_zeros(())
    for c in range(num_classes):
        in_c = y == c
        a, b = in_c & ~minority, in_c & minority
        if not (bool(a.any()) and bool(b.any())):
            continue
        p_maj = probs[a].mean(0).clamp(1e-12, 1 - 1e-12)
        p_min = probs[b].mean(0).clamp(1e-12, 1 - 1e-12)
        total = total + (p_min * (p_min.log() - p_maj.log())).mean()
    return total


# -- Metadata Normalization (Lu et al., CVPR 2021) --------------------------------------
def metadata_columns(
    y: torch.Tensor, cf: torch.Tensor, num_classes: int, num_values: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The MDN design matrix split in (label block, confounder block incl. intercept).

    Label: the label itself for two classes (the paper's column), else one-hot without the
    first class (C − 1 columns). Confounder: a float attribute is one column (the paper's
    cf1); an integer (categorical) one is one-hot without its first value (``num_values``
    − 1 columns); then the intercept column of ones. float32."""
    y = y.long()
    if num_classes <= 2:
        lab = y.float()[:, None]
    else:
        lab = F.one_hot(y, num_classes)[:, 1:].float()
    if cf.is_floating_point():
        conf = cf.float().reshape(len(cf), -1)
    else:
        conf = F.one_hot(cf.long().clamp(0, num_values - 1), num_values)[:, 1:].float()
    ones = torch.ones(len(y), 1, device=y.device)
    return lab, torch.cat([conf, ones], dim=1)


class MetadataNorm(nn.Module):
    """The Metadata Normalization layer (Lu et al. 2021, §3; ``metadatanorm.py``).

    Features f (B, ...) flattened to Y (B, F); metadata X_b = [label block | confounder
    block | 1] (B, p). ``kernel`` = (XᵀX)⁻¹ (p, p) of the whole training set, set once
    (``set_kernel``, pseudo-inverse in float64). Training: ``β_b = s · K X_bᵀ Y`` (p, F), with
    s = N_train / batch size (the paper's scale: a batch sum with the full-data kernel);
    running ``β ← (1 − m) β + m β_b`` (m = 0.1). Evaluation uses the running β. Output
    ``r = Y − X_b[:, k:] β[k:]``: only the confounder and intercept rows are removed (k = the
    label block's width); the label's component is kept ("confounder-only removal"). (The
    paper stores the unscaled β and multiplies by s at use: the same numbers.)
    """

    def __init__(self, num_features: int, num_columns: int, label_columns: int,
                 scale: float, momentum: float = 0.1) -> None:  # fmt: skip
        super().__init__()
        self.label_columns, self.scale, self.momentum = label_columns, float(scale), momentum
        self.register_buffer("kernel", torch.zeros(num_columns, num_columns))
        self.register_buffer("beta", torch.zeros(num_columns, num_features))

    def set_kernel(self, x: torch.Tensor) -> None:
        """K = (XᵀX)⁻¹ from the training set's design matrix ``x`` (N, p)."""
        x = x.double()
        self.kernel.copy_(torch.linalg.pinv(x.T @ x).float())

    def forward(self, f: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        y = f.reshape(len(f), -1)
        if self.training:
            beta = self.scale * (self.kernel @ (x.T @ y.float()))
            with torch.no_grad():
                self.beta.mul_(1 - self.momentum).add_(self.momentum * beta.detach())
        else:
            beta = self.beta
        k = self.label_columns
        r = y - (x[:, k:] @ beta[k:]).to(y.dtype)
        return r.reshape(f.shape)


class MetanormCNN(Backbone):
    """The Metadata Normalization paper's CNN (``models.py``): Conv(c→16, 5) → ReLU →
    Conv(16→32, 5) → ReLU → flatten → FC(→84) → ReLU; no pooling, no BN. ``forward`` gives
    the 84-d FC1 output after its ReLU (the penultimate features; a linear head = FC2 with
    two logits). ``mdn`` (set by the ``mdn`` method): MDN layers before the ReLU after FC1
    ("linear") and also after each conv ("conv"), each called with the batch's metadata."""

    def __init__(self, input_shape: tuple[int, ...]) -> None:
        super().__init__()
        c, h, w = input_shape
        self.conv1 = nn.Conv2d(c, 16, 5)
        self.conv2 = nn.Conv2d(16, 32, 5)
        self.fc1 = nn.Linear(32 * (h - 8) * (w - 8), 84)
        self.feature_dim = 84
        self.mdn = nn.ModuleDict()
        self.metadata: torch.Tensor | None = None  # set per batch by the mdn method

    def _norm(self, key: str, t: torch.Tensor) -> torch.Tensor:
        if key in self.mdn:
            assert self.metadata is not None, "MDN needs the batch's metadata"
            return self.mdn[key](t, self.metadata)
        return t

    def forward_map(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self._norm("conv1", self.conv1(x)))
        return F.relu(self._norm("conv2", self.conv2(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self._norm("fc1", self.fc1(self.forward_map(x).flatten(1))))


@register_backbone("metanorm-cnn")
def metanorm_cnn(input_shape: tuple[int, ...]) -> Backbone:
    """The MDN paper's small CNN (32×32 inputs: 18,432 → 84 → logits)."""
    return MetanormCNN(input_shape)


# -- OccamNets (Shrestha, Kafle, Kanan, ECCV 2022) ------------------------------------------
class OccamExit(nn.Module):
    """One exit (``occam_lib.py``): Conv3×3(in → in/4) → BN → ReLU → Conv3×3(→ in) → ReLU;
    CAM = Conv1×1(→ C) (B, C, H, W); logits = global average of the CAM. Gate on the
    *detached* exit features: GAP → Linear(→16) → BN1d → ReLU → Linear(16→1) → sigmoid."""

    def __init__(self, cin: int, num_classes: int) -> None:
        super().__init__()
        hid = max(1, cin // 4)
        self.convs = nn.Sequential(
            nn.Conv2d(cin, hid, 3, padding=1, bias=False),
            nn.BatchNorm2d(hid),
            nn.ReLU(inplace=True),
            nn.Conv2d(hid, cin, 3, padding=1, bias=False),
            nn.ReLU(inplace=True),
        )
        self.cam = nn.Conv2d(cin, num_classes, 1)
        self.gate = nn.Sequential(
            nn.Linear(cin, 16), nn.BatchNorm1d(16), nn.ReLU(inplace=True), nn.Linear(16, 1)
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.convs(x)
        cam = self.cam(h)
        gate_logit = self.gate(h.detach().mean(dim=(2, 3))).squeeze(1)
        return {"cam": cam, "logits": cam.mean(dim=(2, 3)), "gate_logit": gate_logit,
                "features": h.mean(dim=(2, 3))}  # fmt: skip


class OccamCNN(nn.Module):
    """A small Occam network for the 28–80 px built-ins: four conv-BN-ReLU stages of
    w, 2w, 4w, 4w channels (2× max-pool before stages 2 and 3, as ``small-cnn``), one exit
    after each stage. Exit 0's input is detached (it never trains the trunk;
    ``detached_exit_ixs=[0]``). ``forward`` returns the per-exit outputs."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 32) -> None:
        super().__init__()
        w = width
        self.stages = nn.ModuleList([
            _conv_bn(in_channels, w),
            nn.Sequential(nn.MaxPool2d(2), _conv_bn(w, 2 * w)),
            nn.Sequential(nn.MaxPool2d(2), _conv_bn(2 * w, 4 * w)),
            _conv_bn(4 * w, 4 * w),
        ])  # fmt: skip
        self.exits = nn.ModuleList(OccamExit(c, num_classes) for c in (w, 2 * w, 4 * w, 4 * w))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        outs = []
        for i, (stage, exit_) in enumerate(zip(self.stages, self.exits)):
            x = stage(x)
            outs.append(exit_(x.detach() if i == 0 else x))
        return outs


def cam_suppression_loss(cam: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """OccamNets' CAM suppression (§3.2; weight 0.1 in the config): locations j where the
    ground-truth class's CAM is at most its spatial mean are pushed towards uniform class
    scores: mean over batch and locations of ``1[c_j ≤ mean c] · KL(U ‖ softmax(CAM[:, j]))``,
    ``KL(U ‖ p) = Σ_k (1/C)(log(1/C) − log p_k)``. ``cam`` (B, C, H, W)."""
    b, c = cam.shape[:2]
    flat = cam.float().flatten(2)  # (B, C, HW)
    gt = flat[torch.arange(b, device=cam.device), y]  # (B, HW)
    suppress = (gt <= gt.mean(dim=1, keepdim=True)).float()
    logp = F.log_softmax(flat, dim=1)
    kl = (math.log(1.0 / c) - logp).mean(dim=1)  # (B, HW): Σ_k (1/C)(log 1/C − log p_k)
    return (suppress * kl).mean()


def gate_targets(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Exit-gate targets: 1 where the exit's prediction is correct (exit), else 0 (float)."""
    return (logits.argmax(dim=1) == y).float()


def balanced_gate_loss(gate_logit: torch.Tensor, target: torch.Tensor,
                       balance: float = 0.5) -> torch.Tensor:  # fmt: skip
    """Class-balanced BCE of the gates (``occam_trainer.py``): with n_exit, n_cont the counts
    of targets 1 and 0 in the batch divided by their max, weights ``(1/n_exit)^b`` for t = 1
    and ``(1/n_cont)^b`` for t = 0 (b = 0.5); mean of ``w · BCE(sigmoid(logit), t)``."""
    n1 = target.sum()
    n0 = len(target) - n1
    top = torch.maximum(n1, n0).clamp_min(1)
    w1 = (top / n1.clamp_min(1)).pow(balance)
    w0 = (top / n0.clamp_min(1)).pow(balance)
    w = torch.where(target > 0.5, w1, w0)
    bce = F.binary_cross_entropy_with_logits(gate_logit.float(), target, reduction="none")
    return (w * bce).mean()


def exit_choice(gates: torch.Tensor, earliest: int = 1, threshold: float = 0.5) -> torch.Tensor:
    """OccamNets' inference (§3.3): each sample takes the first exit i ≥ ``earliest`` with gate
    ``g_i ≥ threshold``, else the last exit. ``gates`` (B, E) probabilities → exit ids (B,)."""
    e = gates.shape[1]
    ok = gates >= threshold
    ok[:, :earliest] = False
    ok[:, e - 1] = True
    return ok.float().argmax(dim=1)  # first True


def exit_weights(
    outs: list[dict[str, torch.Tensor]], y: torch.Tensor, gamma0: float = 3.0, gamma: float = 1.0
) -> list[torch.Tensor]:
    """Un-normalised, detached CE weights per exit (OccamNets §3.2): exit 0 ``p_0(y|x)^γ0``
    (bias amplification, γ0 = 3); exit i > 0 ``(1 − g_{i−1})^γ`` (γ = 1): samples the previous
    exit would not take get more weight."""
    out = []
    with torch.no_grad():
        for i, o in enumerate(outs):
            if i == 0:
                p = torch.softmax(o["logits"].float(), 1).gather(1, y[:, None]).squeeze(1)
                out.append(p.pow(gamma0))
            else:
                g = torch.sigmoid(outs[i - 1]["gate_logit"].float())
                out.append((1.0 - g).pow(gamma))
    return out
