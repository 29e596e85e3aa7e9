"""The method contract.

A method plugin subclasses ``Method`` and overrides only what its paper changes:

- ``hparams``: its own hyperparameters (defaults + search spaces); the shared training protocol
  (backbone, epochs, lr, ...) comes from ``benchmark.contracts.PROTOCOL`` and the dataset;
  opt-in training options (``grad_clip``, ``sampler``, ``paired_split``) from
  ``benchmark.contracts.TRAINING_OPTIONS``;
- ``build()``: the network (default: backbone + linear head);
- ``loss(batch)``: the training objective (default: cross-entropy; ``batch.weight`` holds
  ``sample_weights``, ``batch.paired`` a batch of ``paired_split``);
- ``optimizers()`` / ``train_step(batch, optimizers, trainer)``: several optimisers or an own
  update rule (default: one optimiser over ``param_groups()``, ``trainer.step`` on ``loss``);
- ``predict_batch(x)``: outputs for a batch (default: logits, features, max-softmax OoD score);
  with ``predict_attrs`` declared, ``predict_batch(x, attrs=...)``; random numbers at inference
  come from ``self.rng`` (seeded by seed and split); ``predict_logits(x)``: logits only.

Post-hoc methods set ``base = "<method>"``: the runner trains (or loads the cached checkpoint
of) the base once and hands it to ``adopt``; ``calibrate`` may then fit on held-out data.
With ``posthoc_checkpoint = True`` what ``calibrate`` trained is cached in its own checkpoint,
keyed on the base's; ``base_settable = True`` lets a run choose the base (``--set base=M``);
``base_seeds`` asks for the base trained with several seeds (``adopt_members``, an ensemble).
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
from benchmark.contracts import PROTOCOL, Batch
from benchmark.dataset import TRACKS, DatasetInfo, provided_tracks
from benchmark.device import autocast
from benchmark.errors import BenchError, UnknownNameError
from benchmark.hparams import HParam
from benchmark.outputs import Outputs
from benchmark.registry import Registry

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
    #: attributes ``predict_batch`` needs at inference: it is then called with ``attrs=`` the
    #: batch's rows of them (e.g. Metadata Normalization's confounder)
    predict_attrs: ClassVar[tuple[str, ...]] = ()
    #: False: the method gives no class scores (e.g. a generative model); it reports its own
    #: per-sample metrics as ``Outputs.extras["metric.<key>"]`` (mean over the split), with
    #: their directions in ``reports``
    classifier: ClassVar[bool] = True
    #: direction (higher is better) of the keys a method reports itself (``classifier``)
    reports: ClassVar[dict[str, bool]] = {}
    #: post-hoc: what ``calibrate`` trains is cached in its own checkpoint (``state_dict``),
    #: keyed on the base's checkpoint(s), instead of being re-fitted by every evaluation
    posthoc_checkpoint: ClassVar[bool] = False
    #: post-hoc: the base may be chosen per run (``--set base=NAME``, a hyperparameter)
    base_settable: ClassVar[bool] = False
    #: settings that make this method's registry-wide smoke test fast (merged over the shared
    #: tiny settings, e.g. ``{"stage2_epochs": 1}``); see tests/test_smoke.py for the budget
    smoke_settings: ClassVar[dict[str, Any]] = {}

    def __init__(self, info: DatasetInfo, hp: Mapping[str, Any], device: torch.device) -> None:
        self.info = info
        self.hp = HP(hp)
        self.device = device
        self.model: nn.Module | None = None
        #: random numbers at inference: a generator on the device seeded by (seed, split),
        #: set by ``Trainer.predict`` before each split
        self.rng: torch.Generator | None = None

    # -- declarations --------------------------------------------------------------------
    @classmethod
    def declared(cls) -> dict[str, HParam]:
        """Every hyperparameter this method accepts: protocol, base method's, its own."""
        from benchmark.method import METHODS

        out = dict(PROTOCOL)
        if cls.base is not None:
            out.update(METHODS.get(cls.base).declared())
        out.update(cls.hparams)
        if cls.base_settable and cls.base is not None:
            out["base"] = HParam(cls.base, help="the method whose trained checkpoint this uses")
        return out

    @classmethod
    def rebased(cls, base: str) -> type[Method]:
        """This method on another base (``--set base=NAME``): a subclass with ``base`` set
        (the same class when ``base`` is already its base). Raises ``BenchError`` when the
        method does not take another base, or the base is unknown or itself post hoc with a
        settable base (a cycle)."""
        if base == cls.base:
            return cls
        if not cls.base_settable:
            raise BenchError(f"{cls.name} does not take another base (--set base)")
        if base not in METHODS:
            raise UnknownNameError("method", base, METHODS.names(), hint="for --set base")
        chain, c = [base], METHODS.get(base)
        while c.base is not None:
            chain.append(c.base)
            c = METHODS.get(c.base)
        if cls.name in chain or METHODS.get(base).base_settable:
            raise BenchError(f"--set base={base}: {cls.name} cannot build on {base}")
        attrs = {"base": base, "__module__": cls.__module__, "__doc__": cls.__doc__}
        sub = type(cls.__name__, (cls,), attrs)
        sub.__qualname__ = cls.__qualname__
        return sub

    @classmethod
    def for_settings(cls, settings: Mapping[str, Any]) -> type[Method]:
        """The class a run with ``settings`` (``--set``) uses: ``rebased`` when they choose a
        ``base`` (or ``method.base``), else this class."""
        base = settings.get("method.base", settings.get("base"))
        if base is None or not (cls.base_settable or cls.base is not None):
            return cls
        return cls.rebased(str(base))

    @classmethod
    def incompatibility(cls, dataset: type[Dataset]) -> str | None:
        """Why this method cannot run on ``dataset``, or None. A dataset serves every track
        it provides the attributes of (``benchmark.dataset.provided_tracks``)."""
        if not set(cls.tracks) & provided_tracks(dataset.track, dataset.attrs):
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
        """The parameter groups of the default optimiser; a group may set its own ``lr`` and
        an ``lr_factor`` (a function of the epoch: its own schedule)."""
        assert self.model is not None
        return [{"params": [p for p in self.model.parameters() if p.requires_grad]}]

    def optimizers(self) -> list[torch.optim.Optimizer]:
        """The optimisers ``train_step`` updates (default: the protocol's optimiser over
        ``param_groups()``). Override for several (e.g. two models, two learning rates)."""
        from benchmark.training import make_optimizer

        return [make_optimizer(self.hp, self.param_groups())]

    # -- training ------------------------------------------------------------------------
    def fit(self, train: Split, trainer: Trainer) -> None:
        trainer.fit(self, train)

    def loss(self, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(self.model(batch.x), batch.y)

    def train_step(
        self, batch: Batch, optimizers: list[torch.optim.Optimizer], trainer: Trainer
    ) -> torch.Tensor:
        """One training step; returns the detached loss (a 0-d float tensor on the device,
        averaged into the epoch's loss). Default: ``loss`` under autocast, then
        ``trainer.step`` (zero, backward, all-reduce, ``grad_clip``, update) on the first
        optimiser. Override for several optimisers or look-ahead steps."""
        with autocast(trainer.device):
            loss = self.loss(batch)
        trainer.step(self, optimizers[0], loss)
        return loss.detach().float()

    def sample_weights(self, train: Split) -> torch.Tensor | None:
        """Per-sample weights of the training split (N,), or None (default). They reach
        ``loss`` as ``batch.weight``; with ``sampler=weighted`` they also set how often each
        sample is drawn (with replacement)."""
        return None

    def on_epoch_start(self, epoch: int) -> None:
        """Hook called before each training epoch."""

    def on_step_end(self, batch: Batch) -> None:
        """Hook called after each optimiser step."""

    # -- post hoc ------------------------------------------------------------------------
    def adopt(self, base: Method) -> None:
        """Start from a trained base method (post-hoc methods)."""
        self.model = base.model

    def base_seeds(self, seed: int) -> list[int]:
        """The seeds of the base this run needs (default ``[seed]``); e.g. a deep ensemble
        of M members asks for ``[seed, ..., seed + M - 1]``. Each member is trained once
        (its own cached checkpoint, the one ``bench run --method BASE --seed s`` uses); the
        first is handed to ``adopt``, all of them to ``adopt_members``."""
        return [seed]

    def adopt_members(self, members: list[Method]) -> None:
        """The trained base for each of ``base_seeds`` (post-hoc methods); default none."""

    def calibrate(self, bundle: Bundle, trainer: Trainer) -> None:
        """Post-hoc fitting on non-test data (e.g. a temperature on ``val``); default none."""

    def summary(self) -> dict[str, Any]:
        """Values the method chose itself (e.g. a τ picked on ``val``); stored in the record's
        ``details["method"]``. Default none."""
        return {}

    # -- inference -----------------------------------------------------------------------
    def predict_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, C) of a normalised batch, for metrics that query the model many times
        (Insertion/Deletion). Default: ``predict_batch(x).logits``; a method whose
        ``predict_batch`` is costly (an explainer) or needs ``attrs`` overrides it."""
        logits = self.predict_batch(x).logits
        if logits is None:
            raise BenchError(f"{self.name} gives no logits")
        return logits

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
