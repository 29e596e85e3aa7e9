"""Waterbirds (Sagawa et al. 2020, group DRO) in the layout of kohpangwei/group_DRO.

``waterbird_complete95_forest2water2/metadata.csv`` has one row per image: ``img_filename``,
``y`` (1 = waterbird), ``split`` (0 train, 1 val, 2 test) and ``place`` (1 = water background);
the images are the CUB birds pasted on Places backgrounds (95% aligned in train, 50% in val and
test). Attributes: ``bias`` = place, ``group`` = 2·y + place, ``aligned`` = (y == place).
Geometry as group_DRO: Resize((256, 256)) + CenterCrop(224), no training augmentation by
default. Protocol: group_DRO's ERM (SGD lr 1e-3, momentum 0.9, wd 1e-4, batch 128, 300 epochs,
constant lr) on a from-scratch backbone (group_DRO fine-tunes an ImageNet ResNet-50).
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from benchmark import Bundle, register_dataset
from benchmark.readers import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    FormatError,
    RealDataset,
    geometry,
    geometry_options,
    image_split,
    read_csv,
)


def parse_rows(rows: list[dict[str, str]]) -> dict[str, np.ndarray]:
    try:
        return {
            "file": np.array([r["img_filename"] for r in rows], dtype=object),
            "y": np.array([int(r["y"]) for r in rows], dtype=np.int64),
            "split": np.array([int(r["split"]) for r in rows], dtype=np.int64),
            "place": np.array([int(float(r["place"])) for r in rows], dtype=np.int64),
        }
    except ValueError as exc:
        raise FormatError(f"metadata.csv has a non-integer y/split/place ({exc})") from exc


@register_dataset("waterbirds")
class Waterbirds(RealDataset):
    """Land/water birds on land/water backgrounds; worst-group accuracy over (y, place)."""

    track = "bias"
    version = "1"
    attrs = ("bias", "group", "aligned")
    options = geometry_options("none")
    protocol = {
        "backbone": "resnext50-32x4d",
        "epochs": 300,
        "batch_size": 128,
        "optimizer": "sgd",
        "lr": 1e-3,
        "momentum": 0.9,
        "weight_decay": 1e-4,
        "schedule": "constant",
        "augment": "none",
    }
    layout = """DIR/waterbird_complete95_forest2water2/{metadata.csv, <NNN.Class>/*.jpg}
        (metadata.csv columns img_filename, y, split, place; the folder group_DRO's script
        writes)"""

    def build(self, options: Mapping[str, Any], data_root: Path | None) -> Bundle:
        folders = ("waterbird_complete95_forest2water2", "waterbirds", "waterbird")
        root = self.find_root(data_root, folders, "metadata.csv")
        rows = self.read(
            root, read_csv, root / "metadata.csv", ["img_filename", "y", "split", "place"]
        )
        meta = self.read(root, parse_rows, rows)
        bad = (meta["y"] < 0) | (meta["y"] > 1) | (meta["place"] < 0) | (meta["place"] > 1)
        if bad.any() or not np.isin(meta["split"], (0, 1, 2)).all():
            raise self.missing(root, "metadata.csv: y and place must be 0/1, split 0/1/2")
        geom = geometry(options, square=True)
        splits = {}
        for name, code in (("train", 0), ("val", 1), ("test", 2)):
            keep = meta["split"] == code
            y, place = meta["y"][keep], meta["place"][keep]
            splits[name] = image_split(
                self,
                root,
                list(meta["file"][keep]),
                y,
                geom,
                name=f"{self.name}-{name}",
                listed_in="metadata.csv",
                bias=place,
                group=2 * y + place,
                aligned=y == place,
            )
        return Bundle(
            name=self.name,
            track=self.track,
            num_classes=2,
            splits=splits,
            version=self.version,
            options=dict(options),
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            class_names=["landbird", "waterbird"],
        )
