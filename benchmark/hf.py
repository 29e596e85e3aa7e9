"""Hugging Face Hub datasets as ``--dataset hf:<repo>`` (e.g. ``hf:uoft-cs/cifar10``).

``DATASETS.get("hf:<repo>")`` builds a ``Dataset`` class for the repository on first use (the
registry's prefix hook). Its ``build`` loads the dataset with ``datasets.load_dataset``: a
dataset already in the local Hugging Face cache is read from it without contacting the Hub
(unless a ``revision`` is asked for); otherwise it is downloaded, unless ``HF_HUB_OFFLINE=1``,
and an unreachable Hub gives one line saying so. The images are decoded once into uint8
tensors and the bundle is cached under ``$BENCH_CACHE/hf/``, keyed by the Hub dataset's own
fingerprint and the options. Meant for datasets that fit in memory (MNIST- to CIFAR-size);
ImageNet-size data is read from its folder by the readers in ``datasets/`` and streamed.

Options: ``config``, ``revision``; ``image_column`` / ``label_column`` (default: the first
``Image`` / ``ClassLabel`` feature); ``train_split`` (``train``), ``test_split`` (default
``test``, else ``validation``); ``size`` (0 keeps the native size, which all images must share;
N resizes to N×N); ``track`` (the table the results belong to, default ``longtail``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.dataset import TRACKS, Bundle, Dataset, Split
from benchmark.errors import BenchError
from benchmark.hparams import NON_NEGATIVE, HParam
from benchmark.io import atomic_torch_save, torch_load
from benchmark.progress import progress_bar
from benchmark.record import content_id

VERSION = "1"
_REPO = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


class HFDataset(Dataset):
    """A Hugging Face Hub image-classification dataset, loaded through ``datasets``."""

    track = "longtail"
    version = VERSION
    repo: str = ""
    cache_bundle = False  # cached here, keyed by the Hub dataset's fingerprint
    options = {
        "config": HParam("", help="dataset configuration (subset) name"),
        "revision": HParam("", help="git revision on the Hub (default: the cached or latest)"),
        "image_column": HParam("", help="column of the images (default: first Image feature)"),
        "label_column": HParam("", help="column of the labels (default: first ClassLabel)"),
        "train_split": HParam("train", help="split used for training"),
        "test_split": HParam("", help="split evaluated (default: test, else validation)"),
        "size": HParam(
            0, help="resize every image to size×size (0: keep the native size)", valid=NON_NEGATIVE
        ),
        "track": HParam("longtail", help="track of the results", choices=TRACKS),
    }
    protocol = {
        "backbone": "resnet32",
        "epochs": 30,
        "batch_size": 128,
        "lr": 0.1,
        "weight_decay": 5e-4,
        "schedule": "cosine",
        "augment": "crop-flip",
    }

    def build(self, options: Mapping[str, Any], data_root: Path | None) -> Bundle:
        from benchmark.data import cache_dir

        dd = load(self.repo, options)
        train_name = options["train_split"]
        test_name = options["test_split"] or next(
            (s for s in ("test", "validation", "valid", "val") if s in dd), ""
        )
        for split in (train_name, test_name):
            if split not in dd:
                raise BenchError(
                    f"{self.name}: no split {split or 'test/validation'!r}; the dataset has "
                    f"{', '.join(dd)} (set dataset.train_split / dataset.test_split)"
                )
        image_col, label_col, names = columns(self.name, dd[train_name], options)
        key = content_id(
            [
                VERSION,
                self.repo,
                dict(options),
                dd[train_name]._fingerprint,
                dd[test_name]._fingerprint,
            ]
        )
        cached = cache_dir() / "hf" / f"{self.repo.replace('/', '--')}-{key}.pt"
        if cached.is_file():
            try:
                from benchmark.data import _from_payload

                return _from_payload(torch_load(cached))
            except Exception:  # a damaged cache file is rebuilt, never trusted
                cached.unlink(missing_ok=True)
        size = int(options["size"])
        splits = {}
        for split, name in (("train", train_name), ("test", test_name)):
            images = decode(self.name, dd[name], image_col, size, f"{self.name} {name}")
            labels = torch.as_tensor(np.asarray(dd[name][label_col], dtype=np.int64))
            splits[split] = Split(images, labels)
        num_classes = len(names) if names else int(splits["train"].labels.max()) + 1
        x = splits["train"].inputs.float() / 255.0
        bundle = Bundle(
            name=self.name,
            track=options["track"],
            num_classes=num_classes,
            splits=splits,
            version=self.version,
            options=dict(options),
            mean=tuple(round(float(v), 4) for v in x.mean(dim=(0, 2, 3))),
            std=tuple(round(float(v), 4) for v in x.std(dim=(0, 2, 3))),
            class_names=names or [str(c) for c in range(num_classes)],
        )
        from benchmark.data import _to_payload

        atomic_torch_save(cached, _to_payload(bundle))
        return bundle


def hf_dataset(name: str) -> type[Dataset]:
    """The ``Dataset`` class of ``hf:<repo>`` (called by the registry's prefix hook)."""
    repo = name.split(":", 1)[1]
    if not _REPO.match(repo):
        raise BenchError(f"'{name}' is not hf:<owner>/<name>, e.g. hf:uoft-cs/cifar10")
    doc = f"Hugging Face Hub dataset {repo} (through the datasets library)."
    return type(f"HF_{repo}", (HFDataset,), {"name": name, "repo": repo, "description": doc})


def load(repo: str, options: Mapping[str, Any]) -> Any:
    """``datasets.load_dataset`` with every failure turned into one line that says what to do."""
    try:
        import datasets
    except ImportError as exc:
        raise BenchError("hf: datasets need the 'datasets' package (pip install datasets)") from exc
    import huggingface_hub

    datasets.utils.logging.set_verbosity_error()
    huggingface_hub.utils.logging.set_verbosity_error()
    offline = datasets.config.HF_HUB_OFFLINE
    if is_cached(repo) and not options["revision"]:
        datasets.config.HF_HUB_OFFLINE = True  # read the cached copy without asking the Hub
    try:
        return datasets.load_dataset(
            repo, options["config"] or None, revision=options["revision"] or None
        )
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if isinstance(exc, ConnectionError) or "offline" in first.lower():
            cache = datasets.config.HF_DATASETS_CACHE
            raise BenchError(
                f"hf:{repo} is not in the local Hugging Face cache ({cache}) and the Hub cannot "
                f"be reached ({first}); load it once with network access, or set HF_HOME to a "
                "cache that has it"
            ) from None
        raise BenchError(f"hf:{repo} cannot be loaded: {first}") from None
    finally:
        datasets.config.HF_HUB_OFFLINE = offline


def is_cached(repo: str) -> bool:
    """Whether ``datasets`` has prepared ``repo`` in its local cache before."""
    from datasets.naming import camelcase_to_snakecase

    import datasets

    parts = repo.split("/")
    parts[-1] = camelcase_to_snakecase(parts[-1])
    return (Path(datasets.config.HF_DATASETS_CACHE) / "___".join(parts)).is_dir()


def columns(name: str, ds: Any, options: Mapping[str, Any]) -> tuple[str, str, list[str]]:
    """(image column, label column, class names or []) of a Hub dataset split."""
    import datasets

    features = ds.features
    image = options["image_column"] or next(
        (c for c, f in features.items() if isinstance(f, datasets.Image)), ""
    )
    label = options["label_column"] or next(
        (c for c, f in features.items() if isinstance(f, datasets.ClassLabel)),
        next((c for c in ("label", "labels", "fine_label") if c in features), ""),
    )
    for what, col in (("image", image), ("label", label)):
        if col not in features:
            raise BenchError(
                f"{name}: no {what} column found (columns: {', '.join(features)}); "
                f"set dataset.{what}_column"
            )
    feature = features[label]
    names = list(feature.names) if isinstance(feature, datasets.ClassLabel) else []
    return image, label, names


def decode(name: str, ds: Any, column: str, size: int, desc: str) -> torch.Tensor:
    """The images of ``column`` as one uint8 (N, C, H, W) tensor (C = 1 for gray sets)."""
    from PIL import Image

    first = ds[0][column]
    mode = "L" if first.mode in ("1", "L", "I;16", "I", "F") else "RGB"
    arrays = []
    batches = progress_bar(
        ds.iter(batch_size=1000),
        total=-(-len(ds) // 1000),
        desc=desc,
        unit="batch",
        enabled=len(ds) > 20_000,
    )
    shape = None
    for batch in batches:
        for img in batch[column]:
            img = img.convert(mode)
            if size:
                img = img.resize((size, size), Image.Resampling.BILINEAR)
            a = np.asarray(img, dtype=np.uint8)
            if shape is None:
                shape = a.shape
            elif a.shape != shape:
                raise BenchError(
                    f"{name}: images differ in size ({shape[1]}×{shape[0]}, then "
                    f"{a.shape[1]}×{a.shape[0]}); set dataset.size=N to resize them to N×N"
                )
            arrays.append(a)
    x = torch.from_numpy(np.stack(arrays))
    return x[:, None] if x.ndim == 3 else x.permute(0, 3, 1, 2).contiguous()
