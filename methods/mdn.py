"""Metadata Normalization, MDN (Lu, Adeli, Zhao, Pohl, Metadata Normalization, CVPR 2021;
mlu355/MetadataNorm ``metadatanorm.py``, ``models.py``).

A closed-form regression inside the network removes the component of the features that a
known confounder explains (``benchmark.tracks.bias.MetadataNorm``): ``r = f − X_cf β_cf``
with ``β = s · (XᵀX)⁻¹ X_bᵀ f`` per training batch, (XᵀX)⁻¹ computed once over the whole
training set, s = N / batch size, a running β (momentum 0.1) at inference, and the label in
the regression but not subtracted ("confounder-only removal").

- The metadata (``metadata``): ``auto`` = the ``confounder`` attribute when the dataset has
  one (``metanorm-synth``: cf1, a float column), else ``bias`` (colour, place: categorical,
  one-hot without its first value; at most ``num_classes`` values). The label block is the
  label (two classes) or its one-hot without the first class.
- MDN-Linear (default): after the penultimate features (the MDN-normalised features are the
  ones the head reads and the record's dcor² measures). With the paper's CNN
  (``backbone=metanorm-cnn``) MDN sits after FC1, before its ReLU, as in the paper, and
  ``mdn_conv=true`` adds MDN after each of the two convolutions (MDN-Conv); the record's
  features (dcor²) are then FC1's normalised output before the ReLU, as the paper measures
  them (``erm`` on ``metanorm-cnn`` reports the backbone's features, after the ReLU).
- The paper-size recipe is the named protocol ``metanorm-paper`` (registered below; the MDN
  code's: the paper's CNN, Adam 1e-4, batch 200, 500 epochs, constant rate: its
  ReduceLROnPlateau on the validation loss and early stopping are not built).
- Inference reads the metadata attribute of each test sample (``predict_attrs``); the label
  column is not used there (filled with zeros).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from benchmark import (
    BenchError,
    Dataset,
    HParam,
    Method,
    Outputs,
    Range,
    Split,
    Trainer,
    build_backbone,
    register_method,
)
from benchmark.contracts import Batch
from benchmark.dataset import provided_tracks
from benchmark.protocols import PROTOCOLS
from benchmark.tracks.bias import MetadataNorm, MetanormCNN, metadata_columns

# The MDN code's recipe on its synthetic data (methods.md §2.2; mlu355/MetadataNorm): the
# paper's CNN, Adam 1e-4 (no weight decay), batch 200, 500 epochs (a GPU protocol).
PROTOCOLS.setdefault("metanorm-paper", {
    "backbone": "metanorm-cnn",
    "epochs": 500,
    "batch_size": 200,
    "optimizer": "adam",
    "lr": 1e-4,
    "weight_decay": 0.0,
    "schedule": "constant",
    "warmup_epochs": 0,
    "augment": "none",
})  # fmt: skip


class MDNClassifier(nn.Module):
    """Backbone → (MDN on the features, unless the backbone holds its own) → linear head.
    ``metadata`` (B, p) must be set before each forward."""

    def __init__(self, backbone: nn.Module, head: nn.Module, mdn: MetadataNorm | None) -> None:
        super().__init__()
        self.backbone, self.head, self.mdn = backbone, head, mdn

    def set_metadata(self, x: torch.Tensor) -> None:
        self.metadata = x
        if isinstance(self.backbone, MetanormCNN):
            self.backbone.metadata = x

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, features). With the paper's CNN the features are FC1's MDN output
        *before* its ReLU (where the paper measures dcor²); the head reads ReLU of them."""
        b = self.backbone
        if isinstance(b, MetanormCNN):
            pre = b.fc1(b.forward_map(x).flatten(1))
            if "fc1" in b.mdn:
                pre = b.mdn["fc1"](pre, self.metadata)
            return self.head(torch.relu(pre)), pre
        f = b(x)
        if self.mdn is not None:
            f = self.mdn(f, self.metadata)
        return self.head(f), f

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[0]

    def layers(self) -> list[MetadataNorm]:
        out = [self.mdn] if self.mdn is not None else []
        if isinstance(self.backbone, MetanormCNN):
            out += list(self.backbone.mdn.values())
        return out


@register_method("mdn")
class MDN(Method):
    """Metadata Normalization layers regress the confounder out of the features."""

    paper = "Lu et al., Metadata Normalization, CVPR 2021"
    tracks = ("bias",)
    hparams = {
        "metadata": HParam(
            "auto", help="attribute regressed out: auto (confounder, else bias), confounder, bias",
            choices=("auto", "confounder", "bias"),
        ),
        "mdn_conv": HParam(False, help="MDN-Conv: also after each conv (backbone=metanorm-cnn)"),
        "mdn_momentum": HParam(0.1, help="momentum of the running β", valid=Range(0, 1)),
    }  # fmt: skip

    @classmethod
    def incompatibility(cls, dataset: type[Dataset]) -> str | None:
        if "bias" not in provided_tracks(dataset.track, dataset.attrs):
            return f"mdn runs on the bias track, not {dataset.track}"
        if not {"confounder", "bias"} & set(dataset.attrs):
            return f"mdn needs a 'confounder' or 'bias' attribute that {dataset.name} lacks"
        return None

    def __init__(self, info: Any, hp: Any, device: torch.device) -> None:
        super().__init__(info, hp, device)
        attr = self.hp.metadata
        if attr == "auto":
            attr = "confounder" if "confounder" in info.attrs else "bias"
        if attr not in info.attrs:
            raise BenchError(f"mdn: metadata={attr} but {info.name} has no such attribute")
        self.attr = attr
        self.predict_attrs = (attr,)  # inference reads it (instance value, see Method)
        self.categorical = attr != "confounder"
        self.num_values = info.num_classes

    def columns(self, y: torch.Tensor, cf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.categorical:
            cf = cf.long()
            if bool((cf < 0).any()) or bool((cf >= self.num_values).any()):
                raise BenchError(
                    f"mdn: attribute {self.attr} must take values 0..{self.num_values - 1}"
                )
        else:
            cf = cf.float()
        return metadata_columns(y, cf, self.info.num_classes, self.num_values)

    def build(self) -> nn.Module:
        c = self.info.num_classes
        lab_cols = 1 if c <= 2 else c - 1
        conf_cols = (self.num_values - 1 if self.categorical else 1) + 1
        p = lab_cols + conf_cols
        scale = 1.0  # set in fit (N / batch size); kept in the checkpoint through beta
        backbone = build_backbone(self.hp.backbone, self.info.input_shape)
        m = self.hp.mdn_momentum
        mdn: MetadataNorm | None
        if isinstance(backbone, MetanormCNN):
            _, h, w = self.info.input_shape
            sizes = {"fc1": 84}
            if self.hp.mdn_conv:
                sizes = {"conv1": 16 * (h - 4) * (w - 4), "conv2": 32 * (h - 8) * (w - 8), **sizes}
            for key, n in sizes.items():
                backbone.mdn[key] = MetadataNorm(n, p, lab_cols, scale, m)
            mdn = None
        else:
            if self.hp.mdn_conv:
                raise BenchError("mdn: mdn_conv=true needs backbone=metanorm-cnn (the paper's CNN)")
            mdn = MetadataNorm(backbone.feature_dim, p, lab_cols, scale, m)
        return MDNClassifier(backbone, nn.Linear(backbone.feature_dim, c), mdn)

    def fit(self, train: Split, trainer: Trainer) -> None:
        lab, conf = self.columns(train.labels, torch.as_tensor(train.attrs[self.attr]))
        x = torch.cat([lab, conf], dim=1).to(self.device)
        scale = len(train) / min(self.hp.batch_size, len(train))
        for layer in self.model.layers():
            layer.set_kernel(x)
            layer.scale = scale
        trainer.fit(self, train)

    def loss(self, batch: Batch) -> torch.Tensor:
        lab, conf = self.columns(batch.y, batch.attrs[self.attr])
        self.model.set_metadata(torch.cat([lab, conf], dim=1))
        return nn.functional.cross_entropy(self.model(batch.x), batch.y)

    def predict_batch(
        self, x: torch.Tensor, attrs: dict[str, torch.Tensor] | None = None
    ) -> Outputs:
        if attrs is None or self.attr not in attrs:
            raise BenchError(f"mdn needs the {self.attr} attribute at inference")
        y0 = torch.zeros(len(x), dtype=torch.long, device=x.device)  # label column: unused
        lab, conf = self.columns(y0, attrs[self.attr])
        self.model.set_metadata(torch.cat([torch.zeros_like(lab), conf], dim=1))
        logits, features = self.model.forward_features(x)
        probs = torch.softmax(logits.float(), dim=1)
        return Outputs(logits=logits, features=features, ood_score=probs.max(1).values,
                       ood_score_kind="msp")  # fmt: skip

    def summary(self) -> dict[str, Any]:
        return {"metadata": self.attr, "layers": len(self.model.layers()) if self.model else 0}
