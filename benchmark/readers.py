"""Readers for real datasets in their official on-disk formats.

Each function reads one format into numpy arrays; the dataset plugins in ``datasets/`` compose
them. A malformed file raises ``FormatError`` naming the file; ``RealDataset.read`` turns it into
the one-line ``DatasetNotFoundError`` that prints the dataset's expected layout.

Formats: idx (MNIST, Fashion-MNIST; ``.gz`` too), the CIFAR python pickles, SVHN's MATLAB
``.mat``, ``<relpath> <label>`` split files (ImageNet-LT, Places-LT), COCO-style json
(iNaturalist 2018), CUB-200-2011's id-indexed txt files and group_DRO's ``metadata.csv``.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from benchmark.dataset import DATASETS, Bundle, Dataset, Split
from benchmark.errors import BenchError, DatasetNotFoundError
from benchmark.glyphs import lt_counts
from benchmark.hparams import AT_LEAST_ONE, SEED, HParam, Range
from benchmark.progress import progress_bar

T = TypeVar("T")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: He et al. 2016 §4.2 (CIFAR ResNets): batch 128, SGD lr 0.1, momentum 0.9, wd 1e-4, 164 epochs
#: (64k iterations), lr ×0.1 at epochs 82 and 123 (32k and 48k iterations), pad-4 crop + flip.
CIFAR_PROTOCOL: dict[str, Any] = {
    "backbone": "resnet32",
    "epochs": 164,
    "batch_size": 128,
    "optimizer": "sgd",
    "lr": 0.1,
    "momentum": 0.9,
    "weight_decay": 1e-4,
    "schedule": "multistep",
    "milestones": [82, 123],
    "lr_decay": 0.1,
    "warmup_epochs": 0,
    "augment": "crop-flip",
}


class FormatError(Exception):
    """A dataset file exists but cannot be read (wrong magic, truncated, missing key)."""


class RealDataset(Dataset):
    """Base of readers for datasets the user already has on disk.

    ``find_root`` accepts the dataset's own folder or a parent that holds it under one of the
    usual names; ``read`` calls a reader and turns a ``FormatError`` into the one-line error that
    prints ``layout``.
    """

    needs_data_root = True

    @classmethod
    def find_root(
        cls, data_root: Path | None, candidates: Iterable[str], marker: str | tuple[str, ...]
    ) -> Path:
        """``data_root`` itself or the first of ``candidates`` inside it that holds ``marker``
        (or any of several alternative markers, e.g. a file and its ``.gz``). A marker ending
        in ``/`` is a folder; any other is a file."""
        if data_root is None:
            raise cls.missing(None, "no data root given")
        markers = (marker,) if isinstance(marker, str) else marker

        def holds(path: Path, m: str) -> bool:
            return (path / m).is_dir() if m.endswith("/") else (path / m).is_file()

        data_root = Path(data_root)
        for sub in ("", *candidates):
            path = data_root / sub if sub else data_root
            if any(holds(path, m) for m in markers):
                return path
        raise cls.missing(data_root, f"'{markers[0]}' not found")

    @classmethod
    def read(cls, root: Path, reader: Callable[..., T], *args: Any) -> T:
        """``reader(*args)``, with format and I/O errors reported with the expected layout."""
        try:
            return reader(*args)
        except FormatError as exc:
            raise cls.missing(root, str(exc)) from exc
        except FileNotFoundError as exc:
            raise cls.missing(root, f"'{Path(exc.filename or '?').name}' not found") from exc
        except UnicodeDecodeError as exc:  # a text file read without ``read_text``
            raise cls.missing(root, f"a file is not UTF-8 text ({exc.reason})") from exc
        except OSError as exc:  # permissions, I/O errors
            name = Path(exc.filename or "?").name
            raise cls.missing(root, f"'{name}' cannot be read ({exc.strerror or exc})") from exc


def need(folder: Path, name: str) -> Path:
    """``folder/name`` or ``folder/name.gz``; ``FileNotFoundError`` names the plain file."""
    for path in (folder / name, folder / f"{name}.gz"):
        if path.is_file():
            return path
    raise FileNotFoundError(2, "not found", str(folder / name))


# -- idx (MNIST, Fashion-MNIST) ---------------------------------------------------------------
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """An idx file (LeCun's format, optionally gzipped): big-endian magic ``00 00 type ndim``,
    then ``ndim`` uint32 sizes, then the values."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise FormatError(f"{path.name} cannot be read ({exc})") from exc
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise FormatError(f"{path.name} is not an idx file (bad magic number)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise FormatError(f"{path.name} is truncated")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_IDX_TYPES[data[2]])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise FormatError(
            f"{path.name} holds {len(data) - header} bytes of values, expected {expected} "
            f"for shape {dims}"
        )
    return np.frombuffer(data, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def read_idx_pair(folder: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images (N, 28, 28), int64 labels) from ``{prefix}-images-idx3-ubyte`` and
    ``{prefix}-labels-idx1-ubyte`` (``train`` or ``t10k``)."""
    images = read_idx(need(folder, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(need(folder, f"{prefix}-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise FormatError(
            f"{prefix} idx files disagree: images {images.shape}, labels {labels.shape}"
        )
    return images.astype(np.uint8), labels.astype(np.int64)


# -- CIFAR python pickles ---------------------------------------------------------------------
#: the only globals a CIFAR batch may name: numpy's array and scalar reconstructors (numpy 1
#: and 2 spell the module differently). Everything else (os.system, eval, any class) is refused.
_CIFAR_GLOBALS = frozenset(
    {
        (module, name)
        for core in ("numpy.core", "numpy._core")
        for module, name in (
            (f"{core}.multiarray", "_reconstruct"),
            (f"{core}.multiarray", "scalar"),
            (f"{core}.numeric", "_frombuffer"),
        )
    }
    | {("numpy", "ndarray"), ("numpy", "dtype")}
)


class _CifarUnpickler(pickle.Unpickler):
    """Admits what the official CIFAR pickles hold: dicts, lists, strings, bytes, numbers and
    numpy arrays (the Python docs' "restricting globals" recipe). A pickle that names any
    other callable raises ``pickle.UnpicklingError`` before it can be called."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _CIFAR_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"it asks to call {module}.{name}, refused")


def read_pickle(path: Path) -> dict[str, Any]:
    """One CIFAR python batch (a pickled dict; latin-1 decoding gives str keys), read with a
    restricted unpickler: a crafted file cannot run code (``FormatError`` names it)."""
    try:
        with path.open("rb") as f:
            obj = _CifarUnpickler(f, encoding="latin1").load()
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise FormatError(f"{path.name} is not a CIFAR python pickle ({exc})") from exc
    if not isinstance(obj, dict):
        raise FormatError(f"{path.name} is not a CIFAR python pickle (no dict inside)")
    return obj


def read_cifar_batches(
    folder: Path, names: Sequence[str], label_key: str
) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images (N, 3, 32, 32), int64 labels) from the batches ``names`` in order; each
    batch's ``data`` rows are channel-planar (1024 R, 1024 G, 1024 B)."""
    xs, ys = [], []
    for name in names:
        path = folder / name
        batch = read_pickle(path)
        if "data" not in batch or label_key not in batch:
            raise FormatError(f"{name} has no '{label_key}' or 'data' entry")
        data = np.asarray(batch["data"], dtype=np.uint8)
        labels = np.asarray(batch[label_key], dtype=np.int64)
        if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
            raise FormatError(f"{name}: data {data.shape} and labels {labels.shape} disagree")
        xs.append(data.reshape(-1, 3, 32, 32))
        ys.append(labels)
    return np.concatenate(xs), np.concatenate(ys)


# -- SVHN .mat ----------------------------------------------------------------------------------
def read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images (N, 3, 32, 32), int64 labels) from ``*_32x32.mat``: ``X`` is stored
    (H, W, C, N) and ``y`` (N, 1) with 10 meaning the digit 0."""
    import scipy.io

    if not path.is_file():
        raise FileNotFoundError(2, "not found", str(path))
    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as exc:
        raise FormatError(f"{path.name} is not a MATLAB v5 file ({exc})") from exc
    if "X" not in mat or "y" not in mat:
        raise FormatError(f"{path.name} has no 'X' and 'y' arrays")
    x, y = mat["X"], mat["y"].reshape(-1).astype(np.int64)
    if x.ndim != 4 or x.shape[2] != 3 or x.shape[3] != len(y):
        raise FormatError(f"{path.name}: X {x.shape} is not (32, 32, 3, N) for {len(y)} labels")
    y[y == 10] = 0
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)).astype(np.uint8), y


# -- split files, json, csv -------------------------------------------------------------------
def read_text(path: Path) -> str:
    """A UTF-8 text file; a byte that is not UTF-8 raises ``FormatError`` naming the file, the
    line and the byte (``FileNotFoundError`` and other ``OSError``s pass through)."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise FormatError(
            f"{path.name} is not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line})"
        ) from None


def read_split_file(path: Path) -> tuple[list[str], np.ndarray]:
    """``<relpath> <label>`` per line (ImageNet-LT / Places-LT lists) -> (paths, int64 labels)."""
    paths, labels = [], []
    for number, line in enumerate(read_text(path).split("\n"), 1):
        line = line.strip()
        if not line:
            continue
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise FormatError(f"{path.name} line {number} is not '<path> <label>': {line!r}")
        paths.append(parts[0])
        labels.append(int(parts[1]))
    if not paths:
        raise FormatError(f"{path.name} is empty")
    return paths, np.asarray(labels, dtype=np.int64)


def read_id_table(path: Path, columns: int = 2) -> dict[int, list[str]]:
    """CUB-style ``<id> <value> ...`` lines -> {id: [values]} (split on whitespace once per
    column, so a value may not contain spaces except in the last column)."""
    out: dict[int, list[str]] = {}
    for number, line in enumerate(read_text(path).split("\n"), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=columns - 1)
        if len(parts) != columns or not parts[0].isdigit():
            raise FormatError(f"{path.name} line {number} is malformed: {line.strip()!r}")
        out[int(parts[0])] = [p.strip() for p in parts[1:]]
    return out


def read_json(path: Path) -> Any:
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise FormatError(f"{path.name} is not valid json ({exc})") from exc


def read_csv(path: Path, required: Sequence[str]) -> list[dict[str, str]]:
    """Rows of a csv file with a header that has every column of ``required``."""
    import csv

    with io.StringIO(read_text(path), newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise FormatError(f"{path.name} has no column(s) {', '.join(missing)}")
        rows = list(reader)
    if not rows:
        raise FormatError(f"{path.name} has no rows")
    return rows


# -- files on disk ------------------------------------------------------------------------------
def file_sizes(root: Path, paths: Sequence[str], *, progress: bool = True) -> np.ndarray:
    """Byte size of every ``root/path`` (-1 when missing), with ``stat`` calls in 32 threads
    (fast on network file systems too)."""

    def sizes(chunk: Sequence[str]) -> list[int]:
        out = []
        for rel in chunk:
            try:
                out.append((root / rel).stat().st_size)
            except OSError:
                out.append(-1)
        return out

    step = 2048
    chunks = [paths[i : i + step] for i in range(0, len(paths), step)]
    show = progress and len(paths) > 50_000
    result = np.empty(len(paths), dtype=np.int64)
    with ThreadPoolExecutor(max_workers=32) as pool:
        done = progress_bar(
            pool.map(sizes, chunks), enabled=show, total=len(chunks), desc="stat", unit="chunk"
        )
        for i, part in enumerate(done):
            result[i * step : i * step + len(part)] = part
    return result


def check_files(
    cls: type[Dataset], root: Path, paths: Sequence[str], listed_in: str, *, progress: bool = True
) -> np.ndarray:
    """File sizes of ``paths`` under ``root``; a missing file is the one-line layout error."""
    sizes = file_sizes(root, paths, progress=progress)
    missing = np.flatnonzero(sizes < 0)
    if len(missing):
        raise cls.missing(
            root,
            f"{len(missing):,} of the {len(paths):,} images listed in {listed_in} are missing "
            f"(first: {paths[missing[0]]})",
        )
    return sizes


def first_dir_with(candidates: Iterable[Path], relpaths: str | Sequence[str]) -> Path | None:
    """The first folder among ``candidates`` that holds the file ``relpaths`` (or any of up to
    16 files spread over a list of them, so that a few missing files do not hide the folder)."""
    paths = [relpaths] if isinstance(relpaths, str) else relpaths
    sample = [paths[i] for i in np.linspace(0, len(paths) - 1, min(16, len(paths))).astype(int)]
    for folder in candidates:
        if any((folder / rel).is_file() for rel in sample):
            return folder
    return None


# -- long-tailed subsets ----------------------------------------------------------------------
def lt_indices(labels: np.ndarray, num_classes: int, imbalance: float, seed: int = 0) -> np.ndarray:
    """The training indices of CIFAR-LT, exactly as LDAM-DRW's ``IMBALANCECIFAR`` draws them
    (Cao et al. 2019): ``img_max = N / C``; ``n_i = int(img_max · (1/ρ)^(i/(C−1)))``; for each
    class in ascending order, shuffle its indices with the legacy MT19937 stream seeded by
    ``seed`` (``np.random.seed(0)`` in the original) and keep the first ``n_i``."""
    rng = np.random.RandomState(seed)  # same stream as the global np.random after seed(seed)
    counts = lt_counts(num_classes, len(labels) / num_classes, imbalance)
    keep = []
    for c, n in zip(np.unique(labels), counts):
        idx = np.where(labels == c)[0]
        rng.shuffle(idx)
        keep.append(idx[:n])
    return np.concatenate(keep)


def check_labels(
    dataset: Dataset | type[Dataset], root: Path, num_classes: int, **labels: np.ndarray
) -> None:
    """Every label of every split in ``[0, num_classes)``, else the layout error."""
    for split, y in labels.items():
        if len(y) and (y.min() < 0 or y.max() >= num_classes):
            raise dataset.missing(
                root, f"{split} labels span {y.min()}..{y.max()}, expected 0..{num_classes - 1}"
            )


# -- bundles ------------------------------------------------------------------------------------
def tensor_split(
    images: np.ndarray, labels: np.ndarray, pair_with: str | None = None, **attrs: np.ndarray
) -> Split:
    """A ``Split`` of in-memory uint8 images (N, C, H, W) (or (N, H, W), made one-channel)."""
    x = torch.from_numpy(np.ascontiguousarray(images))
    if x.ndim == 3:
        x = x[:, None]
    return Split(
        x,
        torch.from_numpy(np.asarray(labels, dtype=np.int64)),
        {k: torch.from_numpy(np.asarray(v)) for k, v in attrs.items()},
        pair_with,
    )


class OoDPair(RealDataset):
    """Base of the classic OoD pairs: train on ``id_dataset``; evaluate ``test`` (ID) and
    ``ood``, the test split of ``ood_dataset`` with labels −1 and ``pair_with="test"`` (the
    runner adds ``is_ood``). Both datasets are found under one data root, their common parent.
    """

    track = "ood"
    id_dataset: str = ""
    ood_dataset: str = ""

    def build(self, options: Mapping[str, Any], data_root: Path | None) -> Bundle:
        id_cls, ood_cls = DATASETS.get(self.id_dataset), DATASETS.get(self.ood_dataset)
        try:
            base = id_cls().build(defaults(id_cls), data_root)
            ood = ood_cls().build(defaults(ood_cls), data_root).splits["test"]
        except DatasetNotFoundError as exc:
            raise relabel(self, exc) from exc
        ref = base.splits["test"]
        if ood.inputs.shape[1:] != ref.inputs.shape[1:]:
            raise DatasetNotFoundError(
                f"{self.name}: {self.ood_dataset} images {tuple(ood.inputs.shape[1:])} differ "
                f"from {self.id_dataset} images {tuple(ref.inputs.shape[1:])}"
            )
        splits = dict(base.splits)
        splits["ood"] = Split(
            ood.inputs, torch.full((len(ood),), -1, dtype=torch.int64), {}, "test"
        )
        return Bundle(
            name=self.name,
            track=self.track,
            num_classes=base.num_classes,
            splits=splits,
            version=self.version,
            options=dict(options),
            mean=base.mean,
            std=base.std,
            class_names=base.class_names,
            eval_splits=("test", "ood"),
        )


def relabel(dataset: Dataset, exc: DatasetNotFoundError) -> DatasetNotFoundError:
    """A component dataset's layout error, shown as ``dataset``'s own (its name, its layout)."""
    reason = str(exc).split("; expected layout:")[0]
    layout = " ".join(dataset.layout.split())
    return DatasetNotFoundError(f"{dataset.name}: {reason}; expected layout: {layout}")


def defaults(cls: type[Dataset]) -> dict[str, Any]:
    """The default options of dataset ``cls``."""
    return {k: p.default for k, p in cls.options.items()}


#: The harness's default for 28×28 digit sets (not a paper's recipe): small CNN, 20 epochs,
#: SGD lr 0.05 with cosine decay, no augmentation.
DIGITS_PROTOCOL: dict[str, Any] = {
    "backbone": "small-cnn",
    "epochs": 20,
    "batch_size": 128,
    "optimizer": "sgd",
    "lr": 0.05,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "schedule": "cosine",
    "augment": "none",
}


class IdxDataset(RealDataset):
    """Base of the idx-file datasets (MNIST, Fashion-MNIST): 60k train / 10k test, 28×28 gray;
    the folder is ``DIR`` itself or one of ``folders`` inside it."""

    track = "ood"
    protocol = DIGITS_PROTOCOL
    folders: tuple[str, ...] = ()
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)
    class_names: tuple[str, ...] = tuple(str(d) for d in range(10))

    def build(self, options: Mapping[str, Any], data_root: Path | None) -> Bundle:
        marker = ("train-labels-idx1-ubyte", "train-labels-idx1-ubyte.gz")
        root = self.find_root(data_root, self.folders, marker)
        x_train, y_train = self.read(root, read_idx_pair, root, "train")
        x_test, y_test = self.read(root, read_idx_pair, root, "t10k")
        check_labels(self, root, len(self.class_names), train=y_train, test=y_test)
        return Bundle(
            name=self.name,
            track=self.track,
            num_classes=len(self.class_names),
            splits={"train": tensor_split(x_train, y_train), "test": tensor_split(x_test, y_test)},
            version=self.version,
            options=dict(options),
            mean=self.mean,
            std=self.std,
            class_names=list(self.class_names),
        )


class CifarLT(RealDataset):
    """Base of CIFAR-10-LT / CIFAR-100-LT: the training set of ``source`` cut with
    ``lt_indices`` (LDAM-DRW's exact indices for ``seed`` 0); the balanced test set as is.
    Normalisation of the TDE configs (Tang et al. 2020) for both."""

    track = "longtail"
    protocol = "cifar-lt"
    source: str = ""
    options = {
        "imbalance": HParam(
            100.0, help="n_max / n_min (the papers use 10, 50, 100, 200)", valid=Range(1)
        ),
        "seed": HParam(
            0, help="seed of LDAM-DRW's np.random.seed before the per-class shuffles", valid=SEED
        ),
    }

    def build(self, options: Mapping[str, Any], data_root: Path | None) -> Bundle:
        if options["imbalance"] < 1:
            raise BenchError(f"{self.name}: imbalance must be >= 1")
        try:
            full = DATASETS.get(self.source)().build({}, data_root)
        except DatasetNotFoundError as exc:
            raise relabel(self, exc) from exc
        train = full.splits["train"]
        keep = lt_indices(
            train.labels.numpy(), full.num_classes, float(options["imbalance"]), options["seed"]
        )
        return Bundle(
            name=self.name,
            track=self.track,
            num_classes=full.num_classes,
            splits={"train": train.subset(torch.from_numpy(keep)), "test": full.splits["test"]},
            version=self.version,
            options=dict(options),
            mean=(0.4914, 0.4822, 0.4465),
            std=(0.2023, 0.1994, 0.2010),
            class_names=full.class_names,
        )


# -- image folders (lazy) ---------------------------------------------------------------------
def geometry_options(train: str = "imagenet") -> dict[str, HParam]:
    """The options of datasets read lazily from image files (they enter the fingerprint)."""
    from benchmark.imagefiles import TRAIN_RECIPES

    return {
        "size": HParam(224, help="side of the model input (the crop)", valid=AT_LEAST_ONE),
        "resize": HParam(
            256,
            help="evaluation: resize to this (short side), then centre-crop",
            valid=AT_LEAST_ONE,
        ),
        "train_transform": HParam(
            train,
            help="training augmentation: imagenet (RandomResizedCrop + flip + ColorJitter 0.4), "
            "crop-flip, none (the evaluation geometry)",
            choices=TRAIN_RECIPES,
        ),
    }


def geometry(options: Mapping[str, Any], *, square: bool = False) -> Any:
    from benchmark.imagefiles import Geometry

    return Geometry(
        int(options["size"]), int(options["resize"]), square, str(options["train_transform"])
    )


def image_split(
    dataset: type[Dataset] | Dataset,
    root: Path,
    paths: Sequence[str],
    labels: np.ndarray,
    geom: Any,
    *,
    name: str,
    listed_in: str,
    sizes: np.ndarray | None = None,
    **attrs: Any,
) -> Split:
    """A ``Split`` whose inputs are the image files ``root/paths`` (checked to exist; their
    sizes enter the fingerprint); ``attrs`` are arrays or lazy ``MaskFiles``."""
    from benchmark.imagefiles import ImageFiles

    if sizes is None:
        sizes = check_files(
            type(dataset) if isinstance(dataset, Dataset) else dataset, root, paths, listed_in
        )
    inputs = ImageFiles.from_paths(root, paths, sizes, geom, name)
    values = {
        k: torch.from_numpy(np.asarray(v)) if isinstance(v, np.ndarray | list) else v
        for k, v in attrs.items()
    }
    return Split(inputs, torch.from_numpy(np.asarray(labels, dtype=np.int64)), values)


class SplitFileDataset(RealDataset):
    """Base of ImageNet-LT and Places-LT (Liu et al. 2019, OLTR): ``{prefix}_train.txt``,
    ``_val.txt`` and ``_test.txt`` list ``<relpath> <label>``; images are read lazily from the
    folder the paths are relative to. Class names are the folder names in the train paths."""

    track = "longtail"
    protocol = "imagenet-lt"
    prefix: str = ""
    txt_folders: tuple[str, ...] = ()
    image_folders: tuple[str, ...] = ()
    options = geometry_options("imagenet")

    def build(self, options: Mapping[str, Any], data_root: Path | None) -> Bundle:
        folders = (*self.txt_folders, *self.image_folders)
        txt_root = self.find_root(data_root, folders, f"{self.prefix}_train.txt")
        assert data_root is not None
        lists = {
            split: self.read(txt_root, read_split_file, txt_root / f"{self.prefix}_{split}.txt")
            for split in ("train", "val", "test")
        }
        train_paths = lists["train"][0]
        places = [txt_root, Path(data_root), txt_root.parent]
        places += [
            p / sub for p in (Path(data_root), txt_root.parent) for sub in self.image_folders
        ]
        image_root = first_dir_with(places, train_paths)
        if image_root is None:
            raise self.missing(
                Path(data_root),
                f"no image of {self.prefix}_train.txt (e.g. '{train_paths[0]}') is beside the "
                "split files or in the data root",
            )
        num_classes = int(max(labels.max() for _, labels in lists.values())) + 1
        check_labels(self, txt_root, num_classes, **{s: y for s, (_, y) in lists.items()})
        names = [str(c) for c in range(num_classes)]
        for path, label in zip(*lists["train"]):
            parts = Path(path).parts
            names[label] = parts[1] if len(parts) > 2 else parts[0]
        geom = geometry(options)
        splits = {
            split: image_split(
                self,
                image_root,
                paths,
                labels,
                geom,
                name=f"{self.name}-{split}",
                listed_in=f"{self.prefix}_{split}.txt",
            )
            for split, (paths, labels) in lists.items()
        }
        return Bundle(
            name=self.name,
            track=self.track,
            num_classes=num_classes,
            splits=splits,
            version=self.version,
            options=dict(options),
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            class_names=names,
        )


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def list_image_folder(
    root: Path, folder: str, classes: Sequence[str], *, progress: bool = True
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Images of ``root/folder/<class>/*`` for each class in order -> (paths relative to root,
    labels = class positions, file sizes), files sorted by name within a class."""
    paths: list[str] = []
    labels: list[int] = []
    sizes: list[int] = []
    bar = progress_bar(
        list(enumerate(classes)),
        enabled=progress and len(classes) > 100,
        desc=f"list {folder}",
        unit="class",
    )
    for label, name in bar:
        class_dir = root / folder / name
        if not class_dir.is_dir():
            continue
        entries = sorted(
            (e for e in os.scandir(class_dir) if e.name.lower().endswith(IMAGE_SUFFIXES)),
            key=lambda e: e.name,
        )
        for e in entries:
            paths.append(f"{folder}/{name}/{e.name}")
            labels.append(label)
            sizes.append(e.stat().st_size)
    return paths, np.asarray(labels, np.int64), np.asarray(sizes, np.int64)
