"""CIFAR-10 vs CIFAR-100, the classic near-OoD pair (OpenOOD's CIFAR-10 near-OoD set).

Train on CIFAR-10 (45,000 after ``n_val`` = 5,000 seeded images are held out as ``val``);
evaluate ``test`` (CIFAR-10 test) and ``ood_near`` (CIFAR-100 test, 10,000 images, labels −1)
together (the runner adds ``is_ood``). Both folders live under one data root. Protocol:
``benchmark.tracks.ood.CIFAR_OOD_PROTOCOL`` (DUQ's CIFAR-10 recipe on the 3×3-stem ResNet-18).
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from benchmark import Bundle, register_dataset
from benchmark.readers import OoDPair
from benchmark.tracks.ood import CIFAR_OOD_PROTOCOL, pair_options, with_val


@register_dataset("cifar10-vs-cifar100")
class Cifar10VsCifar100(OoDPair):
    """In-distribution CIFAR-10 (with a held-out val), near-OoD CIFAR-100 test."""

    version = "2"
    id_dataset = "cifar10"
    ood_dataset = "cifar100"
    protocol = CIFAR_OOD_PROTOCOL
    options = pair_options(5000)
    layout = """DIR/cifar-10-batches-py/{data_batch_1..5, test_batch} and
        DIR/cifar-100-python/{train, test, meta}"""

    def build(self, options: Mapping[str, Any], data_root: Path | None) -> Bundle:
        bundle = super().build(options, data_root)
        n_val, seed = int(options["n_val"]), int(options["seed"])
        return with_val(bundle, n_val, seed, "ood_near")
