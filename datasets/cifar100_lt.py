"""CIFAR-100-LT (Cao et al. 2019, LDAM-DRW ``IMBALANCECIFAR100``) from the CIFAR-100 pickles.

Class i keeps ``n_i = int(500 · (1/ρ)^(i/99))`` training images, chosen exactly as LDAM-DRW
does (``np.random.seed(0)``, per class in ascending order ``np.random.shuffle``, keep the first
``n_i``): ρ = 100 gives 10,847 images, 500 down to 5. Balanced test set (10,000). Protocol
``cifar-lt``.
"""

from benchmark import register_dataset
from benchmark.readers import CifarLT


@register_dataset("cifar100-lt")
class CIFAR100LT(CifarLT):
    """CIFAR-100 training set cut long-tailed (imbalance 10/50/100/200), balanced test set."""

    version = "1"
    protocol = "cifar100-lt"  # the cifar-lt recipe with this dataset's TDE alpha
    source = "cifar100"
    layout = """DIR/cifar-100-python/{train, test, meta} (the extracted cifar-100-python.tar.gz)"""
