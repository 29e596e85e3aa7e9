"""Options the bias track added to its datasets: ``biased-mnist``'s ``canvases``."""

from __future__ import annotations

import torch

from benchmark.data import load_bundle
from benchmark.plugins import load_plugins

load_plugins()

TINY = {"per_class": [3, 1, 2], "cell": 8}


def test_biased_mnist_canvases_repeat_training_digits_with_new_factors() -> None:
    one = load_bundle("biased-mnist", {**TINY, "canvases": 1})
    two = load_bundle("biased-mnist", {**TINY, "canvases": 2})
    n = len(one.splits["train"])
    assert len(two.splits["train"]) == 2 * n
    # the same digits (labels) twice, each canvas drawn with its own factors
    assert torch.equal(two.splits["train"].labels, one.splits["train"].labels.repeat(2))
    factors = two.splits["train"].attrs["texture"]
    assert not torch.equal(factors[:n], factors[n:]) or not torch.equal(
        two.splits["train"].inputs[:n], two.splits["train"].inputs[n:]
    )
    assert len(two.splits["test"]) == len(one.splits["test"])
