"""Attention Lattice Adapter (Hirano, Wada, Iida, Sugiura, JSAI 2024; extended with the
Alternating Epoch Architect in arXiv 2509.14664): a side branch that reads several
intermediate blocks of a ViT image encoder, an attention map that weights the encoder's own
features, and a perception branch that classifies from them.

The variant built here (``benchmark.tracks.attention.AttentionLatticeModel``): the lattice is
one small transformer block per tapped encoder block (4 taps evenly spaced, the last block
included), each tap's patch tokens added to the side stream before its block; the attention
branch gives M = σ(Linear) per patch in [0, 1] and its own class logits; the perception branch
weights the patch tokens of the second-to-last tap by (1 + M) (block 9 of 12 for ViT-B/16, the
JSAI code's layer-9 injection), runs the encoder's later blocks on them and classifies the
pooled features. Loss = CE(perception) + ``att_weight``·CE(attention branch) (the JSAI code's
two terms, with a trained attention head). The encoder is fine-tuned at ``encoder_lr_mult`` ×
the lr (0.1: the JSAI code's backbone multiplier; 0 freezes it). Alternating Epoch Architect
(``aea``): the lattice (side and attention branches) is updated on the even epochs of the
trainer's 0-based count (1st, 3rd, ...) and frozen on the odd ones, on which only the
perception branch (encoder and head) learns.

Encoders: the built-in protocol adopts the cached ``erm`` classifier trained with a ViT
backbone (``vit-hybrid-tiny`` by default: a ViT on ``tiny-cnn``'s stride-4 stem, the ViT
paper's hybrid, ``benchmark.tracks.vit_hybrid``; plain ViTs trained from scratch stay near
chance on ``objects-masks`` in CPU minutes, see the README; the base's head initialises the
perception head) and trains ALA for ``ala_epochs`` (4: the lattice learns on 2 of them).
With ``--set backbone_weights=PATH`` the encoder is CLIP ViT-B/16 read from
a local file (OpenAI's ``ViT-B-16.pt`` or an open_clip state dict; nothing is downloaded), no
base is trained, and ALA (with a new perception head) trains for ``ala_epochs``.
Not built: SAN's 100 query masks, CLIP text-prompt classifier and LoRA.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from benchmark import (
    AT_LEAST_ONE,
    NON_NEGATIVE,
    Bundle,
    HParam,
    Method,
    Range,
    Trainer,
    register_method,
)
from benchmark.errors import BenchError
from benchmark.method import HP
from benchmark.tracks import vit_hybrid  # noqa: F401  (registers vit-hybrid-tiny)
from benchmark.tracks.attention import (
    AttentionLatticeModel,
    ExistingFile,
    TwoBranchExplainer,
    aea_frozen,
    clip_renormalise,
    load_clip_visual,
    set_ala_frozen,
)
from benchmark.tracks.backbones import VisionTransformer
from benchmark.training import make_optimizer

#: the registered ViT backbones an ALA encoder may be (``benchmark.tracks.backbones``,
#: ``benchmark.tracks.vit_hybrid``)
VIT_BACKBONES = ("vit-hybrid-tiny", "vit-tiny", "vit-b16", "vit-micro")


@register_method("ala")
class ALA(TwoBranchExplainer, Method):
    """ALA: lattice side branch over several ViT blocks, attention-weighted perception, AEA."""

    paper = "Hirano et al., Attention Lattice Adapter, JSAI 2024 (arXiv 2509.14664)"
    tracks = ("explain",)
    base = "erm"
    posthoc_checkpoint = True
    #: the built-in base: ``erm`` with ``vit-hybrid-tiny`` under the dataset's own protocol,
    #: so that ``bench run --method erm --set backbone=vit-hybrid-tiny`` trains (and caches)
    #: the same base (plain ``vit-tiny`` / ``vit-micro`` do not learn objects-masks on a CPU)
    protocol_defaults = {"backbone": "vit-hybrid-tiny"}
    hparams = {
        "backbone": HParam(
            "vit-hybrid-tiny", help="the ViT encoder of the base classifier", choices=VIT_BACKBONES
        ),
        "backbone_weights": HParam(
            "",
            help="CLIP ViT-B/16 checkpoint file (OpenAI's ViT-B-16.pt or an open_clip state "
            "dict): the encoder instead of the trained base",
            valid=ExistingFile(),
        ),
        "clip_activation": HParam(
            "auto",
            help="MLP activation of the CLIP encoder: auto (QuickGELU for OpenAI's file, GELU "
            "for a state dict), gelu or quickgelu",
            choices=("auto", "gelu", "quickgelu"),
        ),
        "lattice_taps": HParam(4, help="encoder blocks the lattice reads", valid=Range(2)),
        "side_width": HParam(32, help="width of the lattice's blocks", valid=AT_LEAST_ONE),
        "att_weight": HParam(
            1.0, help="weight of the attention branch's cross-entropy", valid=NON_NEGATIVE
        ),
        "encoder_lr_mult": HParam(
            0.1, help="encoder lr = lr × this (JSAI code: 0.1; 0 freezes it)", valid=NON_NEGATIVE
        ),
        "aea": HParam(True, help="Alternating Epoch Architect: lattice frozen on odd epochs"),
        "ala_epochs": HParam(
            4,
            help="epochs of ALA training (even: AEA trains the lattice on half)",
            valid=AT_LEAST_ONE,
        ),
    }
    smoke_settings = {
        "backbone": "vit-micro", "ala_epochs": 1, "side_width": 16, "lattice_taps": 2,
    }  # fmt: skip

    @classmethod
    def for_settings(cls, settings: Mapping[str, Any]) -> type[Method]:
        """With ``backbone_weights`` set, ALA on the CLIP encoder: a class without base that
        builds and trains the whole model itself (its ``protocol_defaults`` pick ``vit-b16``)."""
        weights = settings.get("method.backbone_weights", settings.get("backbone_weights", ""))
        if not weights or cls.base is None:
            return super().for_settings(settings)
        attrs = {
            "base": None,
            "posthoc_checkpoint": False,
            "protocol_defaults": {"backbone": "vit-b16"},
            "__module__": cls.__module__,
            "__doc__": cls.__doc__,
        }
        sub = type(cls.__name__, (cls,), attrs)
        sub.__qualname__ = cls.__qualname__
        return sub

    # -- model -------------------------------------------------------------------------
    def _wrap(self, encoder: nn.Module, head: nn.Linear | None, renorm: Any = None) -> None:
        if not isinstance(encoder, VisionTransformer):
            raise BenchError(f"ala needs a ViT encoder ({', '.join(VIT_BACKBONES)})")
        self.model = AttentionLatticeModel(
            encoder,
            self.info.num_classes,
            self.hp.lattice_taps,
            self.hp.side_width,
            head=head,
            renormalise=renorm,
        ).to(self.device)

    def build(self) -> nn.Module:
        """The CLIP encoder from ``backbone_weights`` wrapped by ALA (no base)."""
        encoder, self._clip = load_clip_visual(
            self.hp.backbone_weights, self.info.input_shape, self.hp.clip_activation
        )
        renorm = clip_renormalise(self.info.mean, self.info.std)
        self._wrap(encoder, None, renorm)
        return self.model

    def calibrate(self, bundle: Bundle, trainer: Trainer) -> None:
        """ALA on the adopted ``erm`` ViT classifier (its encoder, its head as the perception
        head's initial value), trained for ``ala_epochs``."""
        self._wrap(self.model.backbone, self.model.head)
        self._train(bundle.splits["train"], trainer)

    def fit(self, train: Any, trainer: Trainer) -> None:
        self._train(train, trainer)

    def _train(self, train: Any, trainer: Trainer) -> None:
        hp = self.hp
        self.hp = HP({**hp, "epochs": hp.ala_epochs})
        try:
            trainer.fit(self, train)
        finally:
            self.hp = hp
            set_ala_frozen(self.model, False)

    def optimizers(self) -> list[torch.optim.Optimizer]:
        """The protocol's optimiser; the encoder's group at ``encoder_lr_mult`` × lr (left out
        and frozen when 0), the lattice and the perception head at lr."""
        model = self.model
        encoder = list(model.encoder.parameters())
        rest = [p for n, p in model.named_parameters() if not n.startswith("encoder.")]
        groups = [{"params": rest}]
        if self.hp.encoder_lr_mult > 0:
            groups.append({"params": encoder, "lr": self.hp.lr * self.hp.encoder_lr_mult})
        else:
            for p in encoder:
                p.requires_grad_(False)
        return [make_optimizer(self.hp, groups)]

    def on_epoch_start(self, epoch: int) -> None:
        if self.hp.aea:
            set_ala_frozen(self.model, aea_frozen(epoch))

    def summary(self) -> dict[str, Any]:
        model = self.model
        out: dict[str, Any] = {"taps": [t + 1 for t in model.taps], "inject": model.inject + 1}
        if getattr(self, "_clip", None):
            out["clip"] = self._clip
        return out

    # -- checkpoint --------------------------------------------------------------------
    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        if not isinstance(self.model, AttentionLatticeModel):  # the adopted base classifier
            self._wrap(self.model.backbone, self.model.head)
        self.model.load_state_dict(state)
        self.model.to(self.device)
