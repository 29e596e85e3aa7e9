"""Long-tail baselines against each other on the built-in ``glyph-lt``, as the TDE paper's
tables rank them (Tang, Huang, Zhang, NeurIPS 2020; the decoupling rows quote Kang et al.,
ICLR 2020; the LDAM and focal rows quote Cao et al. 2019 and Lin et al. 2017).

Published numbers: ``../shared/specs/methods.md`` §1.6 (the TDE README's tables, verified
there). A claim that does not hold on ``glyph-lt`` is reported as such: the ranking of these
baselines on a small synthetic dataset need not be the ranking on ImageNet-LT.
"""

from benchmark.cli.studies import Claim, Published, Study, register_study

SOURCE = "methods.md §1.6: TDE README figure (Table 2 of the updated paper)"
CIFAR_SOURCE = "methods.md §1.6: TDE README long-tailed CIFAR table"
IMAGENET = "ImageNet-LT, ResNeXt-50"


@register_study("longtail-baselines-glyph-lt")
class LongtailBaselinesGlyphLT(Study):
    paper = "Tang, Huang, Zhang (NeurIPS 2020), Table 2 baselines: Kang et al. (ICLR 2020) cRT / LWS, Cao et al. (NeurIPS 2019) LDAM, Lin et al. (ICCV 2017) focal"  # noqa: E501
    about = "the baselines' ranking in the TDE paper's tables, on the built-in glyph-lt"
    dataset = "glyph-lt"
    methods = ("ce", "focal", "ldam-drw", "decouple-crt", "decouple-lws", "tde")
    claims = (
        Claim(
            "few", "decouple-crt", ">", "ce",
            published=(Published(IMAGENET, {"decouple-crt": 27.4, "ce": 8.9}, SOURCE, True),),
        ),
        Claim(
            "few", "decouple-lws", ">", "ce",
            published=(Published(IMAGENET, {"decouple-lws": 30.3, "ce": 8.9}, SOURCE, True),),
        ),
        Claim(
            "acc", "ldam-drw", ">", "focal", rule="mean",
            published=(
                Published(
                    "CIFAR-100-LT ρ=100, ResNet-32", {"ldam-drw": 42.0, "focal": 38.4},
                    CIFAR_SOURCE, True,
                ),
            ),
            note="the paper's LDAM row; ldam-drw here adds the deferred re-weighting",
        ),
        Claim(
            "acc", "tde", ">", "decouple-crt", rule="mean",
            published=(Published(IMAGENET, {"tde": 51.8, "decouple-crt": 49.6}, SOURCE, True),),
        ),
    )  # fmt: skip
