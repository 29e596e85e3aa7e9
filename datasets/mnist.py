"""MNIST (LeCun et al. 1998) from its four idx files: 60,000 train / 10,000 test digits, 28×28.

Read by ``benchmark.readers.read_idx`` (plain or gzipped), so torchvision's folder
(``MNIST/raw``) and the files from the original site both work. Track ``ood``: it is the OoD
set of ``fashion-mnist-vs-mnist``; alone, a calibration benchmark.
"""

from benchmark import register_dataset
from benchmark.readers import IdxDataset


@register_dataset("mnist")
class MNIST(IdxDataset):
    """Handwritten digits from the idx files (train 60k / test 10k)."""

    version = "1"
    layout = """DIR/MNIST/raw/ (torchvision) or DIR/ with train-images-idx3-ubyte,
        train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (or .gz)"""
    folders = ("MNIST/raw", "MNIST", "mnist/raw", "mnist")
    mean = (0.1307,)
    std = (0.3081,)
