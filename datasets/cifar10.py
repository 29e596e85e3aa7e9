"""CIFAR-10 (Krizhevsky 2009) from the official python pickle batches.

``cifar-10-batches-py/data_batch_1..5`` (train, in that order: 50,000 images) and
``test_batch`` (10,000), each a pickled dict with ``data`` (N × 3072 uint8, channel-planar) and
``labels``; class names from ``batches.meta``. Read by ``benchmark.readers`` (torchvision's
reader md5-checks every batch, which rejects anything but the original files).
Training protocol: He et al. 2016 §4.2 (ResNet-32, see ``benchmark.readers.CIFAR_PROTOCOL``).
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from benchmark import Bundle, register_dataset
from benchmark.readers import (
    CIFAR_PROTOCOL,
    RealDataset,
    check_labels,
    read_cifar_batches,
    read_pickle,
    tensor_split,
)

#: Per-channel mean/std of the training images (the values used by TDE and LDAM-DRW configs).
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)


@register_dataset("cifar10")
class CIFAR10(RealDataset):
    """10 classes of 32×32 colour images, train 50k / test 10k, from the python batches."""

    track = "ood"
    version = "1"
    protocol = CIFAR_PROTOCOL
    layout = """DIR/cifar-10-batches-py/{data_batch_1, ..., data_batch_5, test_batch,
        batches.meta} (the extracted cifar-10-python.tar.gz)"""

    def build(self, options: Mapping[str, Any], data_root: Path | None) -> Bundle:
        root = self.find_root(data_root, ("cifar-10-batches-py",), "data_batch_1")
        train = [f"data_batch_{i}" for i in range(1, 6)]
        x_train, y_train = self.read(root, read_cifar_batches, root, train, "labels")
        x_test, y_test = self.read(root, read_cifar_batches, root, ["test_batch"], "labels")
        check_labels(self, root, 10, train=y_train, test=y_test)
        names = [str(c) for c in range(10)]
        if (root / "batches.meta").is_file():
            names = self.read(root, read_pickle, root / "batches.meta").get("label_names", names)
        return Bundle(
            name=self.name,
            track=self.track,
            num_classes=10,
            splits={"train": tensor_split(x_train, y_train), "test": tensor_split(x_test, y_test)},
            version=self.version,
            options=dict(options),
            mean=MEAN,
            std=STD,
            class_names=list(names),
        )
