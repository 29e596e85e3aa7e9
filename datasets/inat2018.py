"""iNaturalist 2018 (Van Horn et al. 2018) from the official COCO-style json annotations.

``train2018.json`` (437,513 images) and ``val2018.json`` (24,426 = 3 per class, reported as the
test set by the long-tail papers): ``images`` (``id``, ``file_name``), ``annotations``
(``image_id``, ``category_id``) and ``categories``; 8,142 classes, label = position of the
category id in the sorted list of ids. Images (``train_val2018/<kingdom>/<id>/<hash>.jpg``)
stay on disk and are streamed. Normalisation of classifier-balancing; protocol ``imagenet-lt``.
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from benchmark import Bundle, register_dataset
from benchmark.readers import (
    FormatError,
    RealDataset,
    first_dir_with,
    geometry,
    geometry_options,
    image_split,
    read_json,
)


def annotated_images(coco: Any, name: str) -> tuple[list[str], list[int]]:
    """(file names, category ids) of every annotated image, in the order of ``images``."""
    try:
        category = {a["image_id"]: a["category_id"] for a in coco["annotations"]}
        pairs = [(im["file_name"], category[im["id"]]) for im in coco["images"]]
    except (KeyError, TypeError) as exc:
        raise FormatError(f"{name} lacks COCO-style images/annotations ({exc})") from exc
    return [p for p, _ in pairs], [c for _, c in pairs]


@register_dataset("inat2018")
class INat2018(RealDataset):
    """8,142 species, naturally long-tailed (1,000 down to 2 training images per class)."""

    track = "longtail"
    version = "1"
    protocol = "imagenet-lt"
    options = geometry_options("imagenet")
    layout = """DIR/{train2018.json, val2018.json, train_val2018/<kingdom>/<category id>/*.jpg}
        (or DIR/inat2018/...; the folder of the official archives)"""

    def build(self, options: Mapping[str, Any], data_root: Path | None) -> Bundle:
        folders = ("inat2018", "iNat2018", "iNaturalist2018", "inaturalist2018")
        root = self.find_root(data_root, folders, "train2018.json")
        lists = {}
        for split, file in (("train", "train2018.json"), ("test", "val2018.json")):
            coco = self.read(root, read_json, root / file)
            lists[split] = self.read(root, annotated_images, coco, file)
        ids = sorted({c for _, cats in lists.values() for c in cats})
        position = {c: i for i, c in enumerate(ids)}
        image_root = first_dir_with([root, root.parent], lists["train"][0])
        if image_root is None:
            example = lists["train"][0][0]
            raise self.missing(root, f"no image of train2018.json (e.g. '{example}') was found")
        geom = geometry(options)
        splits = {
            split: image_split(
                self,
                image_root,
                paths,
                np.array([position[c] for c in cats], dtype=np.int64),
                geom,
                name=f"{self.name}-{split}",
                listed_in=file,
            )
            for (split, (paths, cats)), file in zip(
                lists.items(), ("train2018.json", "val2018.json")
            )
        }
        return Bundle(
            name=self.name,
            track=self.track,
            num_classes=len(ids),
            splits=splits,
            version=self.version,
            options=dict(options),
            mean=(0.466, 0.471, 0.380),
            std=(0.195, 0.194, 0.192),
            class_names=[str(c) for c in ids],
        )
