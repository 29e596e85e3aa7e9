"""CIFAR-10 vs SVHN, the classic far-OoD pair (ODIN, Mahalanobis, DUQ, SDE-Net, ...).

Train on CIFAR-10 (50,000); evaluate ``test`` (CIFAR-10 test, in-distribution) and ``ood``
(SVHN test, 26,032 images, labels −1) together: the runner marks ``is_ood`` and the OoD metrics
score the two sets against each other. Both folders live under one data root.
"""

from benchmark import register_dataset
from benchmark.readers import CIFAR_PROTOCOL, OoDPair


@register_dataset("cifar10-vs-svhn")
class Cifar10VsSvhn(OoDPair):
    """In-distribution CIFAR-10, out-of-distribution SVHN test."""

    version = "1"
    id_dataset = "cifar10"
    ood_dataset = "svhn"
    protocol = CIFAR_PROTOCOL
    layout = """DIR/cifar-10-batches-py/{data_batch_1..5, test_batch} and
        DIR/{svhn/}test_32x32.mat (+ train_32x32.mat)"""
