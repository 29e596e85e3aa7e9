"""Tiny copies of the real datasets' on-disk layouts, written by the tests (no download).

Each writer creates files in the official format (idx, CIFAR pickles, SVHN .mat, split txt
files + JPEGs, iNaturalist json, CUB txt files + segmentation PNGs, Waterbirds metadata.csv,
ImageNet-S RGB id masks) and returns what the reader should find.
"""

from __future__ import annotations

import gzip
import json
import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image

WNIDS = ("n01440764", "n01443537", "n01484850")


def write_idx(path: Path, array: np.ndarray, *, gz: bool = False) -> None:
    """LeCun's idx format: 00 00 08 ndim, big-endian uint32 sizes, uint8 values."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


def write_mnist(folder: Path, seed: int = 0, *, gz: bool = False, n: tuple[int, int] = (30, 20)):
    """train/t10k idx pairs in ``folder``; returns {split: (images, labels)}."""
    rng = np.random.RandomState(seed)
    out = {}
    for prefix, count in zip(("train", "t10k"), n):
        x = rng.randint(0, 256, (count, 28, 28)).astype(np.uint8)
        y = (np.arange(count) % 10).astype(np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte", x, gz=gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", y, gz=gz)
        out[prefix] = (x, y)
    return out


def _pickle(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        pickle.dump(obj, f)


def write_cifar10(root: Path, per_batch: int = 10, seed: int = 0) -> dict[str, np.ndarray]:
    """``root/cifar-10-batches-py`` with 5 train batches + test_batch + batches.meta."""
    rng = np.random.RandomState(seed)
    folder = root / "cifar-10-batches-py"
    rows, labels = [], []
    for i in range(1, 6):
        data = rng.randint(0, 256, (per_batch, 3072)).astype(np.uint8)
        y = [int(v) for v in rng.permutation(np.arange(per_batch) % 10)]
        _pickle(folder / f"data_batch_{i}", {"data": data, "labels": y, "batch_label": f"b{i}"})
        rows.append(data)
        labels += y
    test = rng.randint(0, 256, (per_batch, 3072)).astype(np.uint8)
    _pickle(folder / "test_batch", {"data": test, "labels": list(np.arange(per_batch) % 10)})
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship"]
    _pickle(folder / "batches.meta", {"label_names": [*names, "truck"]})
    return {"train": np.concatenate(rows), "labels": np.array(labels), "test": test}


def write_cifar100(root: Path, n: int = 20, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.RandomState(seed)
    folder = root / "cifar-100-python"
    out = {}
    for name in ("train", "test"):
        data = rng.randint(0, 256, (n, 3072)).astype(np.uint8)
        fine = list(np.arange(n) % 100)
        _pickle(folder / name, {"data": data, "fine_labels": fine, "coarse_labels": [0] * n})
        out[name] = data
    _pickle(folder / "meta", {"fine_label_names": [f"c{i}" for i in range(100)]})
    return out


def write_svhn(folder: Path, n: tuple[int, int] = (12, 8), seed: int = 2):
    """``train_32x32.mat`` / ``test_32x32.mat`` as scipy writes MATLAB v5: X (32, 32, 3, N),
    y (N, 1) with 10 for the digit 0."""
    import scipy.io

    rng = np.random.RandomState(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, count in zip(("train", "test"), n):
        x = rng.randint(0, 256, (32, 32, 3, count)).astype(np.uint8)
        y = (np.arange(count) % 10 + 1).reshape(-1, 1).astype(np.uint8)  # 1..10
        scipy.io.savemat(folder / f"{name}_32x32.mat", {"X": x, "y": y})
        out[name] = (x, y)
    return out


def jpeg(path: Path, rng: np.random.RandomState, size: tuple[int, int], level: int = 0) -> None:
    """A smooth random colour image of ``size`` (w, h), brighter for larger ``level``."""
    w, h = size
    small = rng.rand(4, 4, 3) * 120 + 40 * level
    img = Image.fromarray(np.clip(small, 0, 255).astype(np.uint8)).resize((w, h))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, quality=90)


def write_split_files(
    root: Path, prefix: str = "ImageNet_LT", counts=(6, 3, 2), seed: int = 0
) -> dict[str, list[str]]:
    """ImageNet-LT-style lists ``{prefix}_{train,val,test}.txt`` and the JPEGs they name."""
    rng = np.random.RandomState(seed)
    lines: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for c, wnid in enumerate(WNIDS[: len(counts)]):
        for split, folder, n in (
            ("train", "train", counts[c]),
            ("val", "train", 1),
            ("test", "val", 2),
        ):
            for k in range(n):
                rel = f"{folder}/{wnid}/{wnid}_{split}{k}.JPEG"
                jpeg(root / rel, rng, (int(rng.randint(20, 40)), int(rng.randint(20, 40))), c)
                lines[split].append(f"{rel} {c}")
    for split, rows in lines.items():
        (root / f"{prefix}_{split}.txt").write_text("\n".join(rows) + "\n")
    return lines


def write_inat(root: Path, seed: int = 0) -> None:
    """train2018.json / val2018.json (COCO style) and their images, category ids 3, 7, 11."""
    rng = np.random.RandomState(seed)
    for split, per in (("train", (3, 2, 1)), ("val", (1, 1, 1))):
        images, annotations = [], []
        for cat, n in zip((3, 7, 11), per):
            for k in range(n):
                image_id = len(images) + 1
                rel = f"train_val2018/Plantae/{cat}/{split}{k}.jpg"
                jpeg(root / rel, rng, (24, 20), cat // 4)
                images.append({"id": image_id, "file_name": rel, "width": 24, "height": 20})
                annotations.append({"id": image_id, "image_id": image_id, "category_id": cat})
        categories = [{"id": c, "name": f"species {c}"} for c in (3, 7, 11)]
        doc = {"images": images, "annotations": annotations, "categories": categories}
        (root / f"{split}2018.json").write_text(json.dumps(doc))


CUB_CLASSES = ("001.Black_footed_Albatross", "002.Laysan_Albatross")


def write_cub(parent: Path, seed: int = 0, *, masks_inside: bool = False) -> Path:
    """``parent/CUB_200_2011`` (4 images, 2 classes) and ``parent/segmentations``. Each mask
    is 255 on the left half of the image, 0 on the right."""
    rng = np.random.RandomState(seed)
    root = parent / "CUB_200_2011"
    seg = (root if masks_inside else parent) / "segmentations"
    lines = {"images": [], "labels": [], "split": []}
    for i in range(1, 5):
        cls = CUB_CLASSES[(i - 1) % 2]
        rel = f"{cls}/{cls.split('.')[1]}_{i:04d}.jpg"
        jpeg(root / "images" / rel, rng, (40, 30), i % 2)
        mask = np.zeros((30, 40), np.uint8)
        mask[:, :20] = 255
        (seg / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask).save((seg / rel).with_suffix(".png"))
        lines["images"].append(f"{i} {rel}")
        lines["labels"].append(f"{i} {(i - 1) % 2 + 1}")
        lines["split"].append(f"{i} {1 if i <= 2 else 0}")
    (root / "images.txt").write_text("\n".join(lines["images"]) + "\n")
    (root / "image_class_labels.txt").write_text("\n".join(lines["labels"]) + "\n")
    (root / "train_test_split.txt").write_text("\n".join(lines["split"]) + "\n")
    (root / "classes.txt").write_text(f"1 {CUB_CLASSES[0]}\n2 {CUB_CLASSES[1]}\n")
    return root


def write_waterbirds(parent: Path, seed: int = 0) -> list[tuple[int, int, int]]:
    """group_DRO's folder: metadata.csv + images; returns (y, split, place) per row."""
    rng = np.random.RandomState(seed)
    root = parent / "waterbird_complete95_forest2water2"
    rows = [(y, split, place) for split in (0, 1, 2) for y in (0, 1) for place in (0, 1)]
    lines = ["img_id,img_filename,y,split,place,place_filename"]
    for i, (y, split, place) in enumerate(rows, 1):
        rel = f"{CUB_CLASSES[y]}/bird_{i}.jpg"
        jpeg(root / rel, rng, (30, 26), place)
        lines.append(f"{i},{rel},{y},{split},{place},/b/bamboo_forest/x.jpg")
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    return rows


def write_imagenet_s(parent: Path, seed: int = 0) -> Path:
    """``ImageNetS50`` with train/, validation/ and validation-segmentation/ RGB id masks:
    top rows id 5 (R=5), the next rows id 1000 (ignore: R=232, G=3), the rest background."""
    rng = np.random.RandomState(seed)
    root = parent / "ImageNetS50"
    for c, wnid in enumerate(WNIDS[:2]):
        for k in range(2):
            jpeg(root / "train" / wnid / f"{wnid}_{k}.JPEG", rng, (32, 24), c)
        name = f"ILSVRC2012_val_0000000{c}"
        jpeg(root / "validation" / wnid / f"{name}.JPEG", rng, (32, 24), c)
        mask = np.zeros((24, 32, 3), np.uint8)
        mask[:8, :, 0] = 5
        mask[8:12, :, 0], mask[8:12, :, 1] = 1000 % 256, 1000 // 256
        (root / "validation-segmentation" / wnid).mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask).save(root / "validation-segmentation" / wnid / f"{name}.png")
    return root


def write_hf_cache(cache: Path, repo: str = "me/tiny", n: tuple[int, int] = (12, 6)) -> None:
    """The local ``datasets`` cache as a Hub dataset loaded once leaves it
    (``<ns>___<name>/default/0.0.0/<hash>/``): made with the parquet builder, then renamed."""
    import shutil

    import datasets

    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b", "c"])}
    )
    rng = np.random.RandomState(0)
    files = {}
    for split, count in zip(("train", "test"), n):
        images = [
            Image.fromarray(rng.randint(0, 255, (8, 8, 3), dtype=np.uint8)) for _ in range(count)
        ]
        ds = datasets.Dataset.from_dict(
            {"image": images, "label": [i % 3 for i in range(count)]}, features=features
        )
        files[split] = str(cache / f"src-{split}.parquet")
        ds.to_parquet(files[split])
    builder = datasets.load_dataset_builder(
        "parquet", data_files=files, cache_dir=str(cache / "tmp")
    )
    builder.download_and_prepare()
    name = repo.split("/")[-1]
    target = cache / repo.replace("/", "___") / "default" / "0.0.0" / Path(builder.cache_dir).name
    shutil.copytree(builder.cache_dir, target)
    for f in target.glob("parquet-*.arrow"):
        f.rename(target / f.name.replace("parquet-", f"{name}-"))
    info = json.loads((target / "dataset_info.json").read_text())
    info.update(dataset_name=name, config_name="default")
    (target / "dataset_info.json").write_text(json.dumps(info))
