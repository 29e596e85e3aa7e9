"""Fashion-MNIST vs MNIST, the classic grey-scale OoD pair (DUQ, SDE-Net, ...).

Train on Fashion-MNIST (55,000 after ``n_val`` = 5,000 seeded images are held out as ``val``,
DUQ's 55k / 5k split); evaluate ``test`` (Fashion-MNIST test) and ``ood_far`` (MNIST test,
10,000 digits, labels −1) together (the runner adds ``is_ood``). Both idx folders live under
one data root, as torchvision lays them out. Normalisation: DUQ's Fashion-MNIST mean / std
(0.2861, 0.3530), for the OoD digits too. Protocol:
``benchmark.tracks.ood.FASHION_OOD_PROTOCOL`` (DUQ's 3-conv CNN recipe).
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from benchmark import Bundle, register_dataset
from benchmark.readers import OoDPair
from benchmark.tracks.ood import FASHION_OOD_PROTOCOL, pair_options, with_val


@register_dataset("fashion-mnist-vs-mnist")
class FashionMnistVsMnist(OoDPair):
    """In-distribution Fashion-MNIST (with a held-out val), OoD MNIST test."""

    version = "2"
    id_dataset = "fashion-mnist"
    ood_dataset = "mnist"
    protocol = FASHION_OOD_PROTOCOL
    options = pair_options(5000)
    layout = """DIR/FashionMNIST/raw/ and DIR/MNIST/raw/, each with train-images-idx3-ubyte,
        train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (or .gz)"""

    def build(self, options: Mapping[str, Any], data_root: Path | None) -> Bundle:
        bundle = super().build(options, data_root)
        n_val, seed = int(options["n_val"]), int(options["seed"])
        return with_val(bundle, n_val, seed, "ood_far", mean=(0.2861,), std=(0.3530,))
