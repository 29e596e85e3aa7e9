"""Metadata Normalization (Lu et al., CVPR 2021) on its synthetic dataset (``metanorm-synth``).

The paper's claim: MDN removes the confounder from the learned features (distance correlation
dcor² towards 0) and, no longer using the confounder, the accuracy falls towards the level the
main factor alone allows (about 83.3%: a derived bound, ``../shared/specs/methods.md`` §2.3).
The paper's numbers are not verified (methods.md §2.5: from memory, no value quoted), so this
study has no published number: the claims are directions. Settings: the bias track's 3-seed
evidence (``tiny-cnn``, 20 epochs; the protocol's ``small-cnn`` × 40 epochs is slower).
"""

from benchmark.cli.studies import Claim, Study, register_study


@register_study("mdn-synthetic")
class MDNSynthetic(Study):
    paper = "Lu, Zhao, Mwangi, Hernandez, Pohl, Adeli: Metadata Normalization (CVPR 2021)"
    about = "MDN-Linear vs the baseline on the built-in metanorm-synth (bias track settings)"
    dataset = "metanorm-synth"
    methods = ("erm", "mdn")
    settings = {"backbone": "tiny-cnn", "epochs": "20"}
    claims = (
        Claim(
            "dcor2", "mdn", "<", "erm",
            note="published: dcor² near 0 for MDN, clearly above 0 for the baseline "
            "(methods.md §2.5, unverified: a direction, no number)",
        ),
        Claim(
            "acc", "mdn", "<", "erm", rule="mean",
            note="towards the 83.3% the main factor alone allows (derived, methods.md §2.3)",
        ),
    )  # fmt: skip
