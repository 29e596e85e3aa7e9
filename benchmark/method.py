"""The method contract.

A method plugin subclasses ``Method`` and overrides only what its paper changes:

- ``hparams``: its own hyperparameters (defaults + search spaces); the shared training protocol
  (backbone, epochs, lr, ...) comes from ``benchmark.training.PROTOCOL`` and the dataset;
- ``build()``: the network (default: backbone + linear head);
- ``loss(batch)``: the training objective (default: cross-entropy);
- ``predict_batch(x)``: outputs for a batch (default: logits, features, max-softmax OoD score).

Post-hoc methods set ``base = "<method>"``: the runner trains (or loads the cached checkpoint
of) the base once and hands it to ``adopt``; ``calibrate`` may then fit on held-out data.
Hyperparameters marked ``test_time=True`` never enter the checkpoint key, so changing them
reuses the trained model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.backbones import Backbone, build_backbone
from benchmark.dataset import TRACKS, DatasetInfo
from benchmark.hparams import HParam
from benchmark.outputs import Outputs
from benchmark.registry import Registry
from benchmark.training import PROTOCOL, Batch

if TYPE_CHECKING:
    from benchmark.dataset import Bundle, Dataset, Split
    from benchmark.training import Trainer


class HP(dict):
    """Resolved hyperparameters with attribute access (``self.hp.lr``); read-only."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("hyperparameters are read-only")


class Classifier(nn.Module):
    """Backbone features followed by a head; ``forward`` returns logits."""

    def __init__(self, backbone: Backbone, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.backbone(x)
        return self.head(features), features


class Method:
    """Base class of method plugins (see the module docstring)."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    tracks: ClassVar[tuple[str, ...]] = TRACKS
    requires: ClassVar[tuple[str, ...]] = ()  # training-split attributes the method needs
    hparams: ClassVar[dict[str, HParam]] = {}
    protocol_defaults: ClassVar[dict[str, Any]] = {}
    base: ClassVar[str | None] = None
    #: ``loss`` reads only the batch's device tensors and needs no ``on_step_end``, so the whole
    #: step may be captured in a CUDA graph (``bench run --fast graph``)
    graph_safe: ClassVar[bool] = False

    def __init__(self, info: DatasetInfo, hp: Mapping[str, Any], device: torch.device) -> None:
        self.info = info
        self.hp = HP(hp)
        self.device = device
        self.model: nn.Module | None = None

    # -- declarations --------------------------------------------------------------------
    @classmethod
    def declared(cls) -> dict[str, HParam]:
        """Every hyperparameter this method accepts: protocol, base method's, its own."""
        from benchmark.method import METHODS

        out = dict(PROTOCOL)
        if cls.base is not None:
            out.update(METHODS.get(cls.base).declared())
        out.update(cls.hparams)
        return out

    @classmethod
    def incompatibility(cls, dataset: type[Dataset]) -> str | None:
        """Why this method cannot run on ``dataset``, or None."""
        if dataset.track not in cls.tracks:
            return f"{cls.name} runs on tracks {', '.join(cls.tracks)}, not {dataset.track}"
        missing = [a for a in cls.requires if a not in dataset.attrs]
        if missing:
            return f"{cls.name} needs attribute(s) {', '.join(missing)} that {dataset.name} lacks"
        if cls.base is not None:
            return METHODS.get(cls.base).incompatibility(dataset)
        return None

    # -- model ---------------------------------------------------------------------------
    def build(self) -> nn.Module:
        backbone = build_backbone(self.hp.backbone, self.info.input_shape)
        return Classifier(backbone, nn.Linear(backbone.feature_dim, self.info.num_classes))

    def setup(self) -> None:
        self.model = self.build().to(self.device)

    def param_groups(self) -> list[dict[str, Any]]:
        assert self.model is not None
        return [{"params": [p for p in self.model.parameters() if p.requires_grad]}]

    # -- training ------------------------------------------------------------------------
    def fit(self, train: Split, trainer: Trainer) -> None:
        trainer.fit(self, train)

    def loss(self, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(self.model(batch.x), batch.y)

    def on_epoch_start(self, epoch: int) -> None:
        """Hook called before each training epoch."""

    def on_step_end(self, batch: Batch) -> None:
        """Hook called after each optimiser step."""

    # -- post hoc ------------------------------------------------------------------------
    def adopt(self, base: Method) -> None:
        """Start from a trained base method (post-hoc methods)."""
        self.model = base.model

    def calibrate(self, bundle: Bundle, trainer: Trainer) -> None:
        """Post-hoc fitting on non-test data (e.g. a temperature on ``val``); default none."""

    def summary(self) -> dict[str, Any]:
        """Values the method chose itself (e.g. a τ picked on ``val``); stored in the record's
        ``details["method"]``. Default none."""
        return {}

    # -- inference -----------------------------------------------------------------------
    def predict_batch(self, x: torch.Tensor) -> Outputs:
        logits, features = self.model.forward_features(x)
        probs = torch.softmax(logits.float(), dim=1)
        return Outputs(
            logits=logits,
            features=features,
            ood_score=probs.max(dim=1).values,
            ood_score_kind="msp",
        )

    # -- checkpoint ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        assert self.model is not None
        return {k: v.detach().cpu() for k, v in self.model.state_dict().items()}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        assert self.model is not None
        self.model.load_state_dict(state)
        self.model.to(self.device)


METHODS: Registry[type[Method]] = Registry("method", Method)
register_method = METHODS.register
