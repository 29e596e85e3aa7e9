"""CIFAR-10 vs SVHN, the classic far-OoD pair (ODIN, Mahalanobis, DUQ, SDE-Net, Gram, ...).

Train on CIFAR-10 (45,000 after ``n_val`` = 5,000 seeded images are held out as ``val``, where
post-hoc detectors and calibrators fit); evaluate ``test`` (CIFAR-10 test, in-distribution) and
``ood_far`` (SVHN test, 26,032 images, labels −1, CIFAR-10's normalisation) together: the
runner marks ``is_ood`` and the OoD metrics score the two sets against each other. Both folders
live under one data root. Protocol: ``benchmark.tracks.ood.CIFAR_OOD_PROTOCOL`` (DUQ's CIFAR-10
recipe on the 3×3-stem ResNet-18).
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from benchmark import Bundle, register_dataset
from benchmark.readers import OoDPair
from benchmark.tracks.ood import CIFAR_OOD_PROTOCOL, pair_options, with_val


@register_dataset("cifar10-vs-svhn")
class Cifar10VsSvhn(OoDPair):
    """In-distribution CIFAR-10 (with a held-out val), far-OoD SVHN test."""

    version = "2"
    id_dataset = "cifar10"
    ood_dataset = "svhn"
    protocol = CIFAR_OOD_PROTOCOL
    options = pair_options(5000)
    layout = """DIR/cifar-10-batches-py/{data_batch_1..5, test_batch} and
        DIR/{svhn/}test_32x32.mat (+ train_32x32.mat)"""

    def build(self, options: Mapping[str, Any], data_root: Path | None) -> Bundle:
        bundle = super().build(options, data_root)
        n_val, seed = int(options["n_val"]), int(options["seed"])
        return with_val(bundle, n_val, seed, "ood_far")
