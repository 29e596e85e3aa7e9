"""ImageNet-S (Gao et al. 2022, LUSSeg) for the explanation track: ImageNet images of 50, 300 or
919 classes with pixel masks on the validation set.

``ImageNetS{50,300,919}/train/<wnid>/*.JPEG`` (or ``train-semi/`` when ``train/`` is absent),
``validation/<wnid>/*.JPEG`` and ``validation-segmentation/<wnid>/<name>.png``: RGB id maps with
class id = R + 256·G (0 = background, 1000 = ignore). The ``mask`` attribute of ``val`` is
255 on every object pixel (ids other than 0 and 1000), 0 elsewhere, in the images' evaluation
geometry; labels are the positions of the wnids in sorted order. The test masks are not
public, so ``val`` is the evaluation split. Images stay on disk and are streamed.
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

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
    list_image_folder,
)


@register_dataset("imagenet-s")
class ImageNetS(RealDataset):
    """ImageNet classes with validation masks (ImageNet-S50 / -S300 / -S919)."""

    track = "explain"
    version = "1"
    attrs = ("mask",)
    options = {
        **geometry_options("imagenet"),
        "variant": HParam(50, help="number of classes: 50, 300 or 919", choices=(50, 300, 919)),
    }
    protocol = "imagenet-lt"
    layout = """DIR/ImageNetS50/{train/<wnid>/*.JPEG (or train-semi/), validation/<wnid>/*.JPEG,
        validation-segmentation/<wnid>/*.png} (ImageNetS300, ImageNetS919 with
        --set dataset.variant=300/919)"""

    def build(self, options: Mapping[str, Any], data_root: Path | None) -> Bundle:
        v = int(options["variant"])
        folders = (f"ImageNetS{v}", f"ImageNet-S/ImageNetS{v}", f"imagenet-s/ImageNetS{v}")
        root = self.find_root(data_root, folders, "validation-segmentation/")
        if not (root / "validation").is_dir():
            raise self.missing(root, "'validation/' not found")
        classes = sorted(p.name for p in (root / "validation").iterdir() if p.is_dir())
        if not classes:
            raise self.missing(root, "'validation/' has no class folders")
        train_dir = "train" if (root / "train").is_dir() else "train-semi"
        geom = geometry(options)
        splits = {}
        for split, folder in (("train", train_dir), ("val", "validation")):
            paths, labels, sizes = list_image_folder(root, folder, classes)
            if not paths:
                raise self.missing(root, f"no images in '{folder}/<wnid>/'")
            attrs = {}
            if split == "val":
                pngs = [
                    str(Path("validation-segmentation", *Path(p).parts[1:]).with_suffix(".png"))
                    for p in paths
                ]
                msizes = check_files(type(self), root, pngs, "validation/ (as .png masks)")
                masks = FileList(root, pngs, msizes, f"{self.name}{v}-masks")
                attrs["mask"] = MaskFiles(masks, geom, mask_kind="ids")
            splits[split] = image_split(
                self,
                root,
                paths,
                labels,
                geom,
                name=f"{self.name}{v}-{split}",
                listed_in=folder,
                sizes=sizes,
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
            eval_splits=("val",),
        )
