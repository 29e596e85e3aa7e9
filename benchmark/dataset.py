"""The dataset contract: a builder plugin returns a ``Bundle`` of named ``Split``s.

A split holds inputs, labels and per-sample attributes. Attribute names the metrics know:

==============  =======================================================================
``group``       int group id (worst-group accuracy)
``bias``        int value of the spurious attribute (e.g. the colour of a digit)
``aligned``     bool, the bias attribute agrees with the label (aligned/conflicting acc.)
``confounder``  float confounder (dcor² of features vs. confounder, Metadata Normalization)
``is_ood``      bool, sample is out-of-distribution (OoD splits)
``mask``        uint8 (N, H, W) object mask (explanation metrics)
==============  =======================================================================

Small data lives in tensors (uint8 images in N×C×H×W, or float inputs); large data can be a
lazy object with ``__len__`` and ``fingerprint_items()`` (see the fast image path).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from benchmark.errors import BenchError, DatasetNotFoundError
from benchmark.hparams import HParam
from benchmark.registry import Registry

TRACKS = ("bias", "longtail", "ood", "explain")
#: the track an attribute serves: a dataset whose splits provide it is scored (and hosts the
#: methods) of that track too, besides its own (masks -> explanations, groups -> bias, ...)
ATTR_TRACKS = {
    "mask": "explain",
    "group": "bias",
    "aligned": "bias",
    "confounder": "bias",
    "is_ood": "ood",
}


def provided_tracks(track: str, attrs: Iterable[str]) -> set[str]:
    """The tracks a dataset of primary ``track`` with attributes ``attrs`` serves."""
    return {track} | {ATTR_TRACKS[a] for a in attrs if a in ATTR_TRACKS}


@dataclass
class Split:
    """One split: ``inputs`` (N, ...), ``labels`` (N,) int64 (-1 = none), ``attrs`` per sample.

    ``pair_with`` names another split evaluated together with this one: an OoD split holds only
    the OoD samples and is paired with the in-distribution ``test`` split.
    """

    inputs: Any
    labels: torch.Tensor
    attrs: dict[str, torch.Tensor] = field(default_factory=dict)
    pair_with: str | None = None

    def __post_init__(self) -> None:
        n = len(self.labels)
        if len(self.inputs) != n:
            raise ValueError(f"split has {len(self.inputs)} inputs but {n} labels")
        for name, value in self.attrs.items():
            if len(value) != n:
                raise ValueError(f"attribute {name!r} has {len(value)} rows, expected {n}")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: torch.Tensor) -> Split:
        return Split(
            self.inputs[index],
            self.labels[index],
            {k: v[index] for k, v in self.attrs.items()},
            self.pair_with,
        )


@dataclass
class Bundle:
    """What a dataset builder returns: splits plus the metadata a run needs."""

    name: str
    track: str
    num_classes: int
    splits: dict[str, Split]
    version: str
    options: dict[str, Any] = field(default_factory=dict)
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)
    class_names: list[str] | None = None
    eval_splits: tuple[str, ...] = ("test",)
    fingerprint: str = ""

    def __post_init__(self) -> None:
        if self.track not in TRACKS:
            raise ValueError(f"track {self.track!r} is not one of {TRACKS}")
        for s in ("train", *self.eval_splits):
            if s not in self.splits:
                raise ValueError(f"bundle {self.name!r} has no split {s!r}")
        if not self.fingerprint:
            self.fingerprint = fingerprint(self)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.splits["train"].inputs.shape[1:])

    def class_counts(self, split: str = "train") -> torch.Tensor:
        """Number of samples per class in ``split`` (length ``num_classes``)."""
        labels = self.splits[split].labels
        return torch.bincount(labels[labels >= 0], minlength=self.num_classes)

    def info(self) -> DatasetInfo:
        return DatasetInfo(
            name=self.name,
            track=self.track,
            num_classes=self.num_classes,
            input_shape=self.input_shape,
            mean=self.mean,
            std=self.std,
            train_counts=self.class_counts("train"),
            attrs=tuple(sorted({a for s in self.splits.values() for a in s.attrs})),
            fingerprint=self.fingerprint,
        )


@dataclass(frozen=True)
class DatasetInfo:
    """What a method may know about a dataset before training (no test data)."""

    name: str
    track: str
    num_classes: int
    input_shape: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train_counts: torch.Tensor
    attrs: tuple[str, ...]
    fingerprint: str


def _hash_tensor(h: Any, t: torch.Tensor) -> None:
    t = t.detach().cpu().contiguous()
    h.update(f"{t.dtype}:{tuple(t.shape)}".encode())
    h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def fingerprint(bundle: Bundle) -> str:
    """sha256 (16 hex) of the bundle's content: every split's inputs, labels and attributes."""
    h = hashlib.sha256()
    h.update(json.dumps([bundle.name, bundle.version, bundle.num_classes]).encode())
    for name in sorted(bundle.splits):
        split = bundle.splits[name]
        h.update(f"split:{name}:{split.pair_with}".encode())
        if isinstance(split.inputs, torch.Tensor):
            _hash_tensor(h, split.inputs)
        else:
            for item in split.inputs.fingerprint_items():
                h.update(str(item).encode())
        _hash_tensor(h, split.labels)
        for key in sorted(split.attrs):
            h.update(key.encode())
            value = split.attrs[key]
            if isinstance(value, torch.Tensor):
                _hash_tensor(h, value)
            else:  # lazy (e.g. masks on disk)
                for item in value.fingerprint_items():
                    h.update(str(item).encode())
    return h.hexdigest()[:16]


class Dataset:
    """Base class of dataset-builder plugins.

    Subclasses set the class attributes and implement ``build``. ``options`` are declared like
    hyperparameters (``--set dataset.imbalance=50``); they enter the cache key and the
    fingerprint. ``protocol`` gives this dataset's default training recipe (backbone, epochs,
    lr, ...) as a dict or the name of one in ``benchmark.protocols``; ``tiny`` gives options
    for the registry-wide smoke test.
    """

    name: ClassVar[str] = ""
    track: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    description: ClassVar[str] = ""
    options: ClassVar[dict[str, HParam]] = {}
    attrs: ClassVar[tuple[str, ...]] = ()
    protocol: ClassVar[dict[str, Any] | str] = {}
    tiny: ClassVar[dict[str, Any]] = {}
    needs_data_root: ClassVar[bool] = False
    layout: ClassVar[str] = ""
    #: ``load_bundle`` caches the built bundle (False: the builder caches, or reads fast)
    cache_bundle: ClassVar[bool] = True

    def build(self, options: Mapping[str, Any], data_root: Path | None) -> Bundle:
        raise NotImplementedError

    @classmethod
    def builtin(cls) -> bool:
        """A zero-download dataset (usable in the smoke test)."""
        return not cls.needs_data_root

    @classmethod
    def missing(cls, root: Path | None, why: str) -> DatasetNotFoundError:
        """The one-line error for a missing or malformed folder, with the expected layout."""
        where = f" under {root}" if root else " (pass --data-root DIR or set BENCH_DATA)"
        layout = " ".join(cls.layout.split())
        return DatasetNotFoundError(f"{cls.name}: {why}{where}; expected layout: {layout}")

    @classmethod
    def find_root(cls, data_root: Path | None, candidates: Iterable[str], marker: str) -> Path:
        """The dataset folder: ``data_root`` itself or one of ``candidates`` inside it,
        whichever contains ``marker``."""
        if data_root is None:
            raise cls.missing(None, "no data root given")
        data_root = Path(data_root)
        for sub in ("", *candidates):
            path = data_root / sub if sub else data_root
            if (path / marker).exists():
                return path
        raise cls.missing(data_root, f"'{marker}' not found")


DATASETS: Registry[type[Dataset]] = Registry("dataset", Dataset)
register_dataset = DATASETS.register
#: ``hf:<repo>[/<config>]``: a Hugging Face Hub dataset through the ``datasets`` library
DATASETS.register_prefix("hf", "benchmark.hf:hf_dataset")


def check_track(track: str) -> None:
    if track not in TRACKS:
        raise BenchError(f"unknown track {track!r}; tracks are {', '.join(TRACKS)}")
