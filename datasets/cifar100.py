"""CIFAR-100 (Krizhevsky 2009) from the official python pickles.

``cifar-100-python/train`` (50,000 images) and ``test`` (10,000), pickled dicts with ``data``
(N × 3072 uint8, channel-planar), ``fine_labels`` (100 classes, used here) and
``coarse_labels``; names from ``meta`` (``fine_label_names``). Read by ``benchmark.readers``.
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

MEAN, STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)


@register_dataset("cifar100")
class CIFAR100(RealDataset):
    """100 classes of 32×32 colour images (fine labels), train 50k / test 10k."""

    track = "ood"
    version = "1"
    protocol = CIFAR_PROTOCOL
    layout = """DIR/cifar-100-python/{train, test, meta} (the extracted
        cifar-100-python.tar.gz)"""

    def build(self, options: Mapping[str, Any], data_root: Path | None) -> Bundle:
        root = self.find_root(data_root, ("cifar-100-python",), "train")
        x_train, y_train = self.read(root, read_cifar_batches, root, ["train"], "fine_labels")
        x_test, y_test = self.read(root, read_cifar_batches, root, ["test"], "fine_labels")
        check_labels(self, root, 100, train=y_train, test=y_test)
        names = [str(c) for c in range(100)]
        if (root / "meta").is_file():
            names = self.read(root, read_pickle, root / "meta").get("fine_label_names", names)
        return Bundle(
            name=self.name,
            track=self.track,
            num_classes=100,
            splits={"train": tensor_split(x_train, y_train), "test": tensor_split(x_test, y_test)},
            version=self.version,
            options=dict(options),
            mean=MEAN,
            std=STD,
            class_names=list(names),
        )
