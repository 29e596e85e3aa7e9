"""CIFAR-10 vs CIFAR-100, the classic near-OoD pair (OpenOOD's CIFAR-10 near-OoD set).

Train on CIFAR-10 (50,000); evaluate ``test`` (CIFAR-10 test) and ``ood`` (CIFAR-100 test,
10,000 images, labels −1) together (the runner adds ``is_ood``). Both folders live under one
data root.
"""

from benchmark import register_dataset
from benchmark.readers import CIFAR_PROTOCOL, OoDPair


@register_dataset("cifar10-vs-cifar100")
class Cifar10VsCifar100(OoDPair):
    """In-distribution CIFAR-10, out-of-distribution CIFAR-100 test."""

    version = "1"
    id_dataset = "cifar10"
    ood_dataset = "cifar100"
    protocol = CIFAR_PROTOCOL
    layout = """DIR/cifar-10-batches-py/{data_batch_1..5, test_batch} and
        DIR/cifar-100-python/{train, test, meta}"""
