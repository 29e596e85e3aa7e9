"""Plain cross-entropy with a bias-free linear classifier: the "Baseline" of the TDE paper
(Tang et al. 2020, Table 2; config ``cross_entropy.yaml``).

How it differs from ``erm``: the classifier has no bias (``z = W f(x)``), as in the TDE code's
baseline, so that it has the head form of the causal-norm classifier (no bias either) and of
the decoupling methods that start from this checkpoint (``decouple-*``, post-hoc
``logit-adjust``). It also runs on the long-tail track only. Otherwise it is ERM.
"""

from __future__ import annotations

from benchmark import register_method
from benchmark.tracks.longtail import LongTailMethod


@register_method("ce")
class CE(LongTailMethod):
    """Cross-entropy, bias-free linear classifier (the long-tail baseline of Tang et al. 2020)."""

    paper = (
        "Tang et al., Long-Tailed Classification by Keeping the Good and Removing the Bad "
        "Momentum Causal Effect, NeurIPS 2020"
    )
