"""MSP: the maximum softmax probability of a trained classifier as its in-distribution score
(Hendrycks & Gimpel, A Baseline for Detecting Misclassified and Out-of-Distribution Examples
in Neural Networks, ICLR 2017). No hyperparameters; post hoc on the base's cached checkpoint
(default ``erm``, ``--set base=NAME``)."""

from __future__ import annotations

from benchmark import register_method
from benchmark.tracks.ood import PostHocDetector


@register_method("msp")
class MSP(PostHocDetector):
    """s(x) = max_c softmax(f(x))_c on the base (Hendrycks & Gimpel 2017)."""

    paper = (
        "Hendrycks & Gimpel, A Baseline for Detecting Misclassified and Out-of-Distribution "
        "Examples in Neural Networks, ICLR 2017"
    )
