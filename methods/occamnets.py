"""OccamNets (Shrestha, Kafle, Kanan, OccamNets: Mitigating Dataset Bias by Favoring Simpler
Hypotheses, ECCV 2022; erobic/occam-nets-v1 ``occam_lib.py``, ``occam_trainer.py``).

A network with an exit after every stage (``benchmark.tracks.bias.OccamCNN``: four stages,
28–80 px inputs), each exit a class-activation-map (CAM) predictor with a gate. Per exit i
(summed over the exits; each term a batch mean):

1. CAM suppression (weight ``cam_weight`` 0.1): locations where the ground-truth CAM is at
   most its mean are pushed towards uniform class scores;
2. exit-gate loss (weight 1): class-balanced BCE of the gate against t = 1[exit i is correct];
   a sample's target is refreshed only while the exit's running mean-per-class training
   accuracy of the epoch is at most its threshold (``thresholds`` 0.5/0.6/0.7/0.8) or in the
   first epoch; otherwise its stored target is reused. A sample whose target was never set
   (e.g. one that ``drop_last`` left out of every batch of the first epoch) gets it the
   first time it is seen, whatever the accuracy, so no frozen target is a stale 0;
3. gate-weighted CE: exit 0 weights samples by ``p_0(y|x)^3`` (bias amplification), exit
   i > 0 by ``(1 − g_{i−1})``; weights divided by their running maximum in the epoch
   (+1e-5), loss ``mean((w + 0.1)·CE)``. Exit 0 never trains the trunk (its input is
   detached).

Inference from the second exit (E1) on: the first exit with gate ≥ 0.5, else the last.
Outputs: that exit's logits; ``saliency`` = its CAM of the predicted class, bilinearly resized
to the image (``cam_saliency``, a test-time switch: the explanation metrics then score it
where masks exist — Insertion/Deletion query the model ~100 times per image); ``features`` =
the last exit's pooled features (one width for every sample). The record's
``details.method.exit_counts`` gives, per evaluated split in evaluation order (the dataset's
test split first), how many samples left at each exit.

Trunk (``trunk``): ``auto`` mirrors the protocol backbone, so that ``erm`` and OccamNets
compare on the same convolutions: with ``backbone=bias-cnn`` (``biased-mnist``'s 80-px
canvases) the four stages are ``bias-cnn``'s (stride-2 stem w; w→2w; 2× max-pool, 2w→4w;
2× max-pool, 4w→4w), with ``backbone=resnet18`` the paper's OccamResNet-18, otherwise the
``small-cnn`` layout of ``OccamCNN`` (w; pool, 2w; pool, 4w; 4w). The exits (one per stage,
widths w/2w/4w/4w) are the same in the two small layouts.

OccamResNet-18 (``trunk=resnet18``, the paper's network, §3.1 of ``methods.md``;
``occam_resnet.py``): ResNet-18's BasicBlocks [2, 2, 2, 2] at base width ``width`` (the paper:
58, so that the network with its exits has about ResNet-18's parameters), stages = stem +
layer1, layer2, layer3, layer4 (w, 2w, 4w, 8w channels), one exit after each; stem 7×7 stride 2
+ 3×3 max-pool (160-px Biased MNIST), or ``trunk=resnet18-img64``: 3×3 stride 1, no max-pool
(the ``*_img64`` models for 64-px inputs). The paper-size Biased MNIST recipe is the named
protocol ``biased-mnist-paper`` (registered below; a GPU protocol): ``bench run --method
occamnets erm --dataset biased-mnist --protocol biased-mnist-paper --set dataset.cell=32
dataset.canvases=1``; ``erm`` then trains torchvision's ResNet-18 (``backbone=resnet18``,
registered below: the core's ``TorchvisionResNet`` around ``torchvision.models.resnet18``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from benchmark import (
    AT_LEAST_ONE,
    NON_NEGATIVE,
    Batch,
    Each,
    HParam,
    Method,
    Outputs,
    Range,
    Split,
    Trainer,
    register_method,
)
from benchmark.backbones import TorchvisionResNet, _conv_bn, register_backbone
from benchmark.protocols import PROTOCOLS
from benchmark.tracks.bias import (
    OccamCNN,
    OccamExit,
    balanced_gate_loss,
    cam_suppression_loss,
    exit_choice,
    exit_weights,
    gate_targets,
)

EXITS = 4


def bias_cnn_stages(in_channels: int, w: int) -> nn.ModuleList:
    """``bias-cnn``'s convolutions as four Occam stages (w, 2w, 4w, 4w channels: the exits'
    widths): stride-2 stem; w→2w; 2× max-pool, 2w→4w; 2× max-pool, 4w→4w. Conv weights
    normal(0, √(2/(k²·out))) as ``OccamCNN``; BN weight 1, bias 0."""
    stages = nn.ModuleList([
        _conv_bn(in_channels, w, 2),
        _conv_bn(w, 2 * w),
        nn.Sequential(nn.MaxPool2d(2), _conv_bn(2 * w, 4 * w)),
        nn.Sequential(nn.MaxPool2d(2), _conv_bn(4 * w, 4 * w)),
    ])  # fmt: skip
    init_convs(stages)
    return stages


def init_convs(module: nn.Module) -> None:
    """The Occam code's conv init, normal(0, √(2/(k²·out))) (BN keeps torch's weight 1, bias 0,
    which is the code's too)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))


def occam_resnet18_stages(in_channels: int, w: int, img64: bool = False) -> nn.ModuleList:
    """OccamResNet-18's four stages (``occam_resnet.py``): torchvision ``BasicBlock`` × 2 per
    stage, w / 2w / 4w / 8w channels, stride 2 (1×1 conv + BN shortcut) entering stages 2–4;
    stage 1 = stem + layer1, the stem 7×7 stride 2 + BN + ReLU + 3×3 max-pool stride 2, or
    (``img64``) 3×3 stride 1 + BN + ReLU without the pool."""
    from torchvision.models.resnet import BasicBlock

    def layer(cin: int, cout: int, stride: int) -> nn.Sequential:
        down = None
        if stride != 1 or cin != cout:
            down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        return nn.Sequential(BasicBlock(cin, cout, stride, down), BasicBlock(cout, cout))

    if img64:
        stem = [nn.Conv2d(in_channels, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(True)]
    else:
        stem = [nn.Conv2d(in_channels, w, 7, 2, 3, bias=False), nn.BatchNorm2d(w), nn.ReLU(True),
                nn.MaxPool2d(3, 2, 1)]  # fmt: skip
    return nn.ModuleList([
        nn.Sequential(*stem, layer(w, w, 1)),
        layer(w, 2 * w, 2),
        layer(2 * w, 4 * w, 2),
        layer(4 * w, 8 * w, 2),
    ])  # fmt: skip


@register_backbone("resnet18")
def resnet18(input_shape: tuple[int, ...]) -> TorchvisionResNet:
    """ResNet-18 (He et al. 2016), torchvision's architecture, random init, 512-d features:
    the baseline of OccamNets' Biased MNIST table (``biased-mnist-paper``)."""
    from torchvision.models import resnet18 as tv_resnet18

    return TorchvisionResNet(tv_resnet18(weights=None), input_shape[0])


# OccamNets' Biased MNIST recipe (methods.md §3.5; conf of erobic/occam-nets-v1): Adam 1e-3,
# wd 5e-4, 90 epochs, x0.1 at 50 and 70, batch 128, no augmentation; OccamResNet-18 at width 58
# (erm: ResNet-18). 160-px canvases are the dataset options cell=32, canvases=1 (--set).
PROTOCOLS.setdefault("biased-mnist-paper", {
    "backbone": "resnet18",
    "epochs": 90,
    "batch_size": 128,
    "optimizer": "adam",
    "lr": 1e-3,
    "weight_decay": 5e-4,
    "schedule": "multistep",
    "milestones": [50, 70],
    "lr_decay": 0.1,
    "warmup_epochs": 0,
    "augment": "none",
    "width": 58,
})  # fmt: skip


@register_method("occamnets")
class OccamNets(Method):
    """Early-exit CAM predictors with gates, trained towards the simplest sufficient exit."""

    paper = "Shrestha et al., OccamNets: Mitigating Dataset Bias by Favoring Simpler Hypotheses, ECCV 2022"  # noqa: E501
    tracks = ("bias",)
    hparams = {
        "width": HParam(16, help="channels of the first stage (w, 2w, 4w, 4w; OccamResNet-18: "
                        "w, 2w, 4w, 8w, the paper's w 58)", valid=AT_LEAST_ONE),
        "trunk": HParam("auto", help="stage layout: auto (bias-cnn's when backbone=bias-cnn, "
                        "OccamResNet-18 when backbone=resnet18, else small-cnn's), small-cnn, "
                        "bias-cnn, resnet18 (7×7 stem), resnet18-img64 (3×3 stem, 64 px)",
                        choices=("auto", "small-cnn", "bias-cnn", "resnet18", "resnet18-img64")),
        "cam_weight": HParam(0.1, help="weight of the CAM suppression loss", valid=NON_NEGATIVE),
        "gate_weight": HParam(1.0, help="weight of the exit-gate loss", valid=NON_NEGATIVE),
        "gamma0": HParam(3.0, help="exit 0's CE weight p^γ0 (bias amplification)",
                         valid=NON_NEGATIVE),
        "gamma": HParam(1.0, help="exit i>0's CE weight (1 − g_{i−1})^γ", valid=NON_NEGATIVE),
        "weight_offset": HParam(0.1, help="added to the normalised CE weights", valid=NON_NEGATIVE),
        "thresholds": HParam([0.5, 0.6, 0.7, 0.8],
                             help="per-exit training accuracy up to which gate targets update",
                             valid=Each(Range(0, 1), EXITS)),
        "min_epochs": HParam(1, help="epochs in which gate targets always update",
                             valid=NON_NEGATIVE),
        "earliest_exit": HParam(1, help="first exit used at inference (E0 trains only)",
                                valid=Range(0, EXITS - 1)),
        "gate_threshold": HParam(0.5, help="exit when gate ≥ this", valid=Range(0, 1),
                                 test_time=True),
        "cam_saliency": HParam(True, help="return the exit's CAM as saliency", test_time=True),
    }  # fmt: skip
    smoke_settings = {"width": 4}

    def build(self) -> nn.Module:
        c, w = self.info.input_shape[0], self.hp.width
        net = OccamCNN(c, self.info.num_classes, w)
        trunk = self.hp.trunk
        if trunk == "auto":
            auto = {"bias-cnn": "bias-cnn", "resnet18": "resnet18"}
            trunk = auto.get(self.hp.backbone, "small-cnn")
        if trunk == "bias-cnn":
            net.stages = bias_cnn_stages(c, w)
        elif trunk.startswith("resnet18"):
            k = self.info.num_classes
            net.stages = occam_resnet18_stages(c, w, img64=trunk == "resnet18-img64")
            net.exits = nn.ModuleList(OccamExit(ch, k) for ch in (w, 2 * w, 4 * w, 8 * w))
            init_convs(net)  # the new stages and exits (as OccamCNN's)
        return net

    def fit(self, train: Split, trainer: Trainer) -> None:
        n, c = len(train), self.info.num_classes
        self.targets = torch.zeros(EXITS, n, device=self.device)
        self.has_target = torch.zeros(n, dtype=torch.bool, device=self.device)
        self.correct = torch.zeros(EXITS, c, device=self.device)
        self.seen = torch.zeros(c, device=self.device)
        self.wmax = [0.0] * EXITS
        trainer.fit(self, train)

    def on_epoch_start(self, epoch: int) -> None:
        if hasattr(self, "correct"):
            self.correct.zero_()
            self.seen.zero_()
            self.wmax = [0.0] * EXITS

    def loss(self, batch: Batch) -> torch.Tensor:
        hp, y = self.hp, batch.y
        outs = self.model(batch.x)
        idx = batch.index.to(self.device)
        weights = exit_weights(outs, y, hp.gamma0, hp.gamma)
        self.seen += torch.bincount(y, minlength=self.info.num_classes).float()
        total = torch.zeros((), device=batch.x.device)
        for i, o in enumerate(outs):
            logits = o["logits"].float()
            ce = F.cross_entropy(logits, y, reduction="none")
            with torch.no_grad():
                hit = gate_targets(logits, y)
                self.correct[i] += torch.zeros_like(self.seen).index_add(0, y, hit)
                present = self.seen > 0
                acc = float((self.correct[i][present] / self.seen[present]).mean())
                if batch.epoch < hp.min_epochs or acc <= hp.thresholds[i]:
                    self.targets[i, idx] = hit
                else:  # frozen: only samples never seen before get their first target
                    new = ~self.has_target[idx]
                    self.targets[i, idx[new]] = hit[new]
                self.wmax[i] = max(self.wmax[i], float(weights[i].max()))
            w = weights[i] / (self.wmax[i] + 1e-5) + hp.weight_offset
            total = total + (w * ce).mean()
            total = total + hp.cam_weight * cam_suppression_loss(o["cam"], y)
            total = total + hp.gate_weight * balanced_gate_loss(
                o["gate_logit"], self.targets[i, idx]
            )
        self.has_target[idx] = True
        return total

    def _forward(self, x: torch.Tensor) -> tuple[list[dict[str, torch.Tensor]], torch.Tensor]:
        outs = self.model(x)
        gates = torch.stack([torch.sigmoid(o["gate_logit"].float()) for o in outs], dim=1)
        return outs, exit_choice(gates, self.hp.earliest_exit, self.hp.gate_threshold)

    def predict_logits(self, x: torch.Tensor) -> torch.Tensor:
        outs, choice = self._forward(x)
        logits = torch.stack([o["logits"].float() for o in outs], dim=1)
        return logits[torch.arange(len(x), device=x.device), choice]

    def predict_batch(self, x: torch.Tensor) -> Outputs:
        outs, choice = self._forward(x)
        rows = torch.arange(len(x), device=x.device)
        logits = torch.stack([o["logits"].float() for o in outs], dim=1)[rows, choice]
        pred = logits.argmax(dim=1)
        saliency = None
        if self.hp.cam_saliency:
            saliency = torch.zeros(len(x), *x.shape[2:], device=x.device)
            for i, o in enumerate(outs):
                sel = choice == i
                if bool(sel.any()):
                    cam = o["cam"].float()[sel, pred[sel]][:, None]
                    up = F.interpolate(cam, size=x.shape[2:], mode="bilinear", align_corners=False)
                    saliency[sel] = up[:, 0]
        self._count(choice)
        probs = torch.softmax(logits, dim=1)
        return Outputs(logits=logits, features=outs[-1]["features"], saliency=saliency,
                       ood_score=probs.max(1).values, ood_score_kind="msp")  # fmt: skip

    def _count(self, choice: torch.Tensor) -> None:
        """Exit counts per evaluated split (a new split starts when ``self.rng`` changes)."""
        counts = torch.bincount(choice, minlength=EXITS).tolist()
        if getattr(self, "_rng_seen", None) is not self.rng:
            self._rng_seen = self.rng
            self.exit_counts: list[list[int]] = getattr(self, "exit_counts", [])
            self.exit_counts.append([0] * EXITS)
        self.exit_counts[-1] = [a + b for a, b in zip(self.exit_counts[-1], counts)]

    def summary(self) -> dict[str, Any]:
        return {"exit_counts": getattr(self, "exit_counts", [])}
