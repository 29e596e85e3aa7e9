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


def test_biased_mnist_cpu_protocol_is_80_px_6_canvases_adam_3e3_for_4_epochs() -> None:
    """The CPU protocol: 80-px canvases (cell 16), 6 canvases per training digit, ``bias-cnn``,
    Adam 3e-3, 4 epochs. The previous one (60 px, 8 canvases, 1e-3) under-fitted: unbiased
    ``erm`` 85.6 ± 0.3, short of the issue's 90% (README, bias track, for the runs of this one).
    The smoke-test build (``tiny``: cell 8, 4 canvases) stays small, so the smoke pairs do not
    slow down."""
    from benchmark.dataset import DATASETS

    cls = DATASETS.get("biased-mnist")
    assert cls.protocol["backbone"] == "bias-cnn"
    assert (cls.options["cell"].default, cls.options["canvases"].default) == (16, 6)
    assert (cls.protocol["optimizer"], cls.protocol["lr"], cls.protocol["epochs"]) == (
        "adam",
        3e-3,
        4,
    )
    default = load_bundle("biased-mnist", {"per_class": [2, 1, 1]})
    assert len(default.splits["train"]) == 6 * 2 * 10
    assert default.splits["train"].inputs.shape[1:] == (3, 80, 80)
    tiny = load_bundle("biased-mnist", dict(cls.tiny))
    assert len(tiny.splits["train"]) == 4 * cls.tiny["per_class"][0] * 10
    assert tiny.splits["train"].inputs.shape[-1] == 5 * cls.tiny["cell"]
