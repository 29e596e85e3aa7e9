"""CIFAR-10-LT (Cao et al. 2019, LDAM-DRW ``IMBALANCECIFAR10``) from the CIFAR-10 pickles.

Class i keeps ``n_i = int(5000 · (1/ρ)^(i/9))`` training images, chosen exactly as LDAM-DRW
does (``np.random.seed(0)``, then per class in ascending order ``np.random.shuffle`` of its
indices, keep the first ``n_i``), so the subset equals the one of LDAM-DRW, BALMS, RIDE,
MiSLAS, ...: ρ = 100 gives 12,406 images, 5,000 down to 50. The test set stays balanced
(10,000). Protocol ``cifar-lt`` (TDE's BBN ResNet-32 recipe).
"""

from benchmark import register_dataset
from benchmark.readers import CifarLT


@register_dataset("cifar10-lt")
class CIFAR10LT(CifarLT):
    """CIFAR-10 training set cut long-tailed (imbalance 10/50/100/200), balanced test set."""

    version = "1"
    protocol = "cifar10-lt"  # the cifar-lt recipe with this dataset's TDE alpha
    source = "cifar10"
    layout = """DIR/cifar-10-batches-py/{data_batch_1, ..., data_batch_5, test_batch,
        batches.meta} (the extracted cifar-10-python.tar.gz)"""
