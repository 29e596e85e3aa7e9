"""TDE (Tang, Huang, Zhang, NeurIPS 2020) on long-tailed CIFAR-10 (ρ = 100), real data.

The paper's recipe is the dataset's protocol (``cifar10-lt``: BBN's ResNet-32, 200 epochs,
batch 256, warm-up + steps at 120 / 160; TDE α = 1.0). Published top-1
(ρ = 100 / 50 / 10): ``../shared/specs/methods.md`` §1.6, from the official README's
re-run table (verified there); the table has no plain cross-entropy row, so the claim is
TDE against the de-confounded model only.
"""

from benchmark.cli.studies import Claim, Published, Study, register_study

SOURCE = "methods.md §1.6: official README table (re-run after the paper)"


@register_study("tde-cifar10-lt")
class TDECifar10LT(Study):
    paper = "Tang, Huang, Zhang: Long-Tailed Classification by Keeping the Good and Removing the Bad Momentum Causal Effect (NeurIPS 2020)"  # noqa: E501
    about = "the paper's long-tailed CIFAR-10 column, imbalance 100 (the default), real data"
    dataset = "cifar10-lt"
    methods = ("deconfound", "tde")
    data = "real: CIFAR-10 (python version)"
    claims = (
        Claim(
            "acc", "tde", ">", "deconfound", rule="mean",
            published=(
                Published(
                    "CIFAR-10-LT ρ=100, ResNet-32", {"tde": 80.6, "deconfound": 71.7}, SOURCE, True
                ),
                Published(
                    "CIFAR-10-LT ρ=50, ResNet-32", {"tde": 83.6, "deconfound": 77.8}, SOURCE, True
                ),
                Published(
                    "CIFAR-10-LT ρ=10, ResNet-32", {"tde": 88.5, "deconfound": 86.8}, SOURCE, True
                ),
            ),
        ),
    )  # fmt: skip
