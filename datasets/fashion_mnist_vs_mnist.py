"""Fashion-MNIST vs MNIST, the classic grey-scale OoD pair (DUQ, SDE-Net, ...).

Train on Fashion-MNIST (60,000); evaluate ``test`` (Fashion-MNIST test) and ``ood`` (MNIST test,
10,000 digits, labels −1) together (the runner adds ``is_ood``). Both idx folders live under one
data root, as torchvision lays them out.
"""

from benchmark import register_dataset
from benchmark.readers import DIGITS_PROTOCOL, OoDPair


@register_dataset("fashion-mnist-vs-mnist")
class FashionMnistVsMnist(OoDPair):
    """In-distribution Fashion-MNIST, out-of-distribution MNIST test."""

    version = "1"
    id_dataset = "fashion-mnist"
    ood_dataset = "mnist"
    protocol = DIGITS_PROTOCOL
    layout = """DIR/FashionMNIST/raw/ and DIR/MNIST/raw/, each with train-images-idx3-ubyte,
        train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (or .gz)"""
