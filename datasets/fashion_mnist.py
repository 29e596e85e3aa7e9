"""Fashion-MNIST (Xiao et al. 2017) from its idx files: 60,000 train / 10,000 test, 28×28.

Same format as MNIST (``benchmark.readers.read_idx``, plain or gzipped); torchvision's folder
``FashionMNIST/raw`` or zalandoresearch's ``data/fashion`` both work.
"""

from benchmark import register_dataset
from benchmark.readers import IdxDataset


@register_dataset("fashion-mnist")
class FashionMNIST(IdxDataset):
    """Zalando's clothing images from the idx files (train 60k / test 10k)."""

    version = "1"
    layout = """DIR/FashionMNIST/raw/ (torchvision) or DIR/ with train-images-idx3-ubyte,
        train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (or .gz)"""
    folders = (
        "FashionMNIST/raw",
        "FashionMNIST",
        "fashion-mnist/data/fashion",
        "fashion-mnist",
        "fashion_mnist",
        "data/fashion",
    )
    mean = (0.2860,)
    std = (0.3530,)
    class_names = (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    )
