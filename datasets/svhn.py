"""SVHN, cropped digits (Netzer et al. 2011), from the official MATLAB files.

``train_32x32.mat`` (73,257) and ``test_32x32.mat`` (26,032); ``extra_32x32.mat`` (531,131) is
added to training with ``--set dataset.extra=true``. ``X`` is stored (32, 32, 3, N) and read
into (N, 3, 32, 32); label 10 means the digit 0 (``benchmark.readers.read_svhn_mat``).
Protocol: the harness's (not a paper's): ResNet-32, 40 epochs, lr 0.1 ×0.1 at 20 and 30,
random crop without flips (digits are not mirror-symmetric).
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from benchmark import Bundle, HParam, register_dataset
from benchmark.readers import CIFAR_PROTOCOL, RealDataset, read_svhn_mat, tensor_split


@register_dataset("svhn")
class SVHN(RealDataset):
    """House-number digits, 32×32 colour, train 73,257 / test 26,032 (+ extra on request)."""

    track = "ood"
    version = "1"
    options = {"extra": HParam(False, help="add extra_32x32.mat (531,131 images) to training")}
    protocol = {
        **CIFAR_PROTOCOL,
        "epochs": 40,
        "milestones": [20, 30],
        "weight_decay": 5e-4,
        "augment": "crop",
    }
    layout = """DIR/{train_32x32.mat, test_32x32.mat[, extra_32x32.mat]} or DIR/svhn/...
        (the official cropped-digits files)"""

    def build(self, options: Mapping[str, Any], data_root: Path | None) -> Bundle:
        root = self.find_root(data_root, ("svhn", "SVHN", "SVHN/raw"), "train_32x32.mat")
        x_train, y_train = self.read(root, read_svhn_mat, root / "train_32x32.mat")
        x_test, y_test = self.read(root, read_svhn_mat, root / "test_32x32.mat")
        if options["extra"]:
            x_extra, y_extra = self.read(root, read_svhn_mat, root / "extra_32x32.mat")
            x_train = np.concatenate([x_train, x_extra])
            y_train = np.concatenate([y_train, y_extra])
        return Bundle(
            name=self.name,
            track=self.track,
            num_classes=10,
            splits={"train": tensor_split(x_train, y_train), "test": tensor_split(x_test, y_test)},
            version=self.version,
            options=dict(options),
            mean=(0.4377, 0.4438, 0.4728),
            std=(0.1980, 0.2010, 0.1970),
            class_names=[str(d) for d in range(10)],
        )
