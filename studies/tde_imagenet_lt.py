"""TDE (Tang, Huang, Zhang, NeurIPS 2020) on ImageNet-LT, the paper's own table (real data).

Runs the dataset's protocol (``imagenet-lt``: ResNeXt-50 from scratch, 90 epochs, α = 3.0):
a GPU job. Published numbers: ``../shared/specs/methods.md`` §1.6 (verified against the
official README's figure).
"""

from benchmark.cli.studies import Claim, Published, Study, register_study

SOURCE = "methods.md §1.6: official README figure = Table 2 of the updated paper"
IMAGENET = "ImageNet-LT, ResNeXt-50"


@register_study("tde-imagenet-lt")
class TDEImageNetLT(Study):
    paper = "Tang, Huang, Zhang: Long-Tailed Classification by Keeping the Good and Removing the Bad Momentum Causal Effect (NeurIPS 2020)"  # noqa: E501
    about = "the paper's ImageNet-LT table (Many / Medium / Few / Overall) on the real data"
    dataset = "imagenet-lt"
    methods = ("ce", "deconfound", "tde")
    data = "real: ImageNet-LT split files + ImageNet images"
    claims = (
        Claim(
            "few", "tde", ">", "deconfound", rule="mean",
            published=(Published(IMAGENET, {"tde": 31.6, "deconfound": 14.7}, SOURCE, True),),
        ),
        Claim(
            "acc", "tde", ">", "deconfound", rule="mean",
            published=(Published(IMAGENET, {"tde": 51.8, "deconfound": 48.6}, SOURCE, True),),
        ),
        Claim(
            "few", "deconfound", ">", "ce", rule="mean",
            published=(Published(IMAGENET, {"deconfound": 14.7, "ce": 8.9}, SOURCE, True),),
        ),
        Claim(
            "many", "tde", "<", "deconfound", rule="mean",
            published=(Published(IMAGENET, {"tde": 62.7, "deconfound": 67.9}, SOURCE, True),),
        ),
    )  # fmt: skip
