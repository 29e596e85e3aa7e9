"""CUB-200-2011 (Wah et al. 2011) with the segmentation masks, for the explanation track.

``CUB_200_2011/images.txt`` (``<id> <class folder>/<file>.jpg``), ``image_class_labels.txt``
(``<id> <class 1..200>``), ``train_test_split.txt`` (``<id> <1 = train>``: 5,994 / 5,794) and
``classes.txt``; the masks of ``segmentations.tgz`` (``segmentations/<class folder>/<file>.png``,
soft 0..255) inside ``CUB_200_2011/`` or beside it. The ``mask`` attribute holds them lazily in
the evaluation geometry of the images (the metrics binarise at 0.5). Label = class id − 1.
Protocol: TDE's ImageNet recipe at batch 128 (lr 0.05), from scratch (the explanation papers
fine-tune pretrained networks, which the harness does not download).
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from benchmark import Bundle, HParam, register_dataset
from benchmark.imagefiles import FileList, MaskFiles
from benchmark.readers import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    RealDataset,
    check_files,
    geometry,
    geometry_options,
    image_split,
    read_id_table,
)


@register_dataset("cub")
class CUB(RealDataset):
    """200 bird species, 5,994 train / 5,794 test images with object masks."""

    track = "explain"
    version = "1"
    attrs = ("mask",)
    options = {
        **geometry_options("imagenet"),
        "masks": HParam(True, help="read segmentations/ as the mask attribute"),
    }
    protocol = {
        "backbone": "resnext50-32x4d",
        "epochs": 90,
        "batch_size": 128,
        "optimizer": "sgd",
        "lr": 0.05,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "schedule": "cosine",
        "augment": "none",
    }
    layout = """DIR/CUB_200_2011/{images.txt, image_class_labels.txt, train_test_split.txt,
        classes.txt, images/<NNN.Class>/*.jpg} and the masks DIR/segmentations/<NNN.Class>/*.png
        (or CUB_200_2011/segmentations/)"""

    def build(self, options: Mapping[str, Any], data_root: Path | None) -> Bundle:
        root = self.find_root(
            data_root, ("CUB_200_2011", "CUB_200_2011/CUB_200_2011"), "images.txt"
        )
        tables = {
            name: self.read(root, read_id_table, root / f"{name}.txt")
            for name in ("images", "image_class_labels", "train_test_split", "classes")
        }
        ids = sorted(tables["images"])
        missing = [i for i in ids if i not in tables["image_class_labels"]]
        missing += [i for i in ids if i not in tables["train_test_split"]]
        if missing:
            raise self.missing(root, f"image id {missing[0]} has no label or split entry")
        rel = [tables["images"][i][0] for i in ids]
        labels = np.array([int(tables["image_class_labels"][i][0]) - 1 for i in ids])
        is_train = np.array([tables["train_test_split"][i][0] == "1" for i in ids])
        classes = [tables["classes"][c][0] for c in sorted(tables["classes"])]
        geom = geometry(options)
        masks = None
        if options["masks"]:
            seg = next(
                (p for p in (root / "segmentations", root.parent / "segmentations") if p.is_dir()),
                None,
            )
            if seg is None:
                raise self.missing(
                    root, "'segmentations/' not found (or --set dataset.masks=false)"
                )
            pngs = [str(Path(r).with_suffix(".png")) for r in rel]
            sizes = check_files(type(self), seg, pngs, "images.txt (as .png masks)")
            masks = MaskFiles(FileList(seg, pngs, sizes, f"{self.name}-masks"), geom)
        sizes = check_files(type(self), root / "images", rel, "images.txt")
        splits = {}
        for split, keep in (("train", is_train), ("test", ~is_train)):
            pos = np.flatnonzero(keep)
            attrs = {"mask": masks[pos]} if masks is not None else {}
            splits[split] = image_split(
                self,
                root / "images",
                [rel[p] for p in pos],
                labels[pos],
                geom,
                name=f"{self.name}-{split}",
                listed_in="images.txt",
                sizes=sizes[pos],
                **attrs,
            )
        return Bundle(
            name=self.name,
            track=self.track,
            num_classes=len(classes),
            splits=splits,
            version=self.version,
            options=dict(options),
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            class_names=classes,
        )
