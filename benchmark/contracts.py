"""The contracts shared by methods and the training engine: the training protocol every
method accepts, the opt-in training options, and the training batch.

They live here (not in ``benchmark.training``) so that ``benchmark.method`` does not import the
engine: ``method`` -> ``contracts`` <- ``training``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from benchmark.hparams import (
    AT_LEAST_ONE,
    NON_NEGATIVE,
    POSITIVE,
    Choice,
    Each,
    HParam,
    LogUniform,
    Range,
)

#: The training protocol every method shares; datasets set their defaults in ``protocol``.
PROTOCOL: dict[str, HParam] = {
    "backbone": HParam("small-cnn", help="feature extractor (see benchmark/backbones.py)"),
    "epochs": HParam(30, help="training epochs", valid=AT_LEAST_ONE),
    "batch_size": HParam(128, help="training batch size", valid=AT_LEAST_ONE),
    "optimizer": HParam(
        "sgd", help="sgd (momentum, nesterov off) or adam", choices=("sgd", "adam")
    ),
    "lr": HParam(0.1, LogUniform(1e-3, 0.5), "base learning rate", valid=POSITIVE),
    "momentum": HParam(0.9, help="SGD momentum", valid=Range(0, 1, open_high=True)),
    "weight_decay": HParam(5e-4, LogUniform(1e-5, 1e-3), "L2 weight decay", valid=NON_NEGATIVE),
    "schedule": HParam(
        "cosine", help="lr schedule per epoch", choices=("constant", "cosine", "multistep")
    ),
    "milestones": HParam(
        [],
        help="multistep: epochs at which lr is multiplied by lr_decay",
        valid=Each(NON_NEGATIVE),
    ),
    "lr_decay": HParam(0.1, help="multistep factor", valid=Range(0, 1, open_low=True)),
    "warmup_epochs": HParam(
        0, help="linear warm-up from lr/3 over this many epochs", valid=NON_NEGATIVE
    ),
    "augment": HParam(
        "none",
        Choice(("none", "flip", "crop", "crop-flip")),
        "GPU augmentation: random crop (pad H/8) and/or horizontal flip",
        choices=("none", "flip", "crop", "crop-flip"),
    ),
}


@dataclass
class Batch:
    """One training batch, already on the device and normalised."""

    x: torch.Tensor
    y: torch.Tensor
    attrs: dict[str, torch.Tensor]
    index: torch.Tensor  # positions in the training split (for per-sample state)
    epoch: int
    step: int  # global step
    #: per-sample weights (B,) from ``Method.sample_weights`` when the method defines them
    weight: torch.Tensor | None = None
    #: a batch of the split named by the ``paired_split`` setting (e.g. unlabeled data for
    #: semi-supervised learning), drawn alongside; None unless the method declares it
    paired: Batch | None = None


#: Sampler choices of the ``sampler`` training option (see ``TRAINING_OPTIONS``).
SAMPLERS = ("uniform", "class-balanced", "group-balanced", "weighted")

#: Training settings a method opts into by listing them in its ``hparams`` (e.g.
#: ``hparams = {"grad_clip": TRAINING_OPTIONS["grad_clip"], ...}``); methods that do not
#: declare them train exactly as before, and their records do not carry the keys.
TRAINING_OPTIONS: dict[str, HParam] = {
    "grad_clip": HParam(
        0.0, help="clip the gradients' total L2 norm to this value (0: off)", valid=NON_NEGATIVE
    ),
    "sampler": HParam(
        "uniform",
        help="training order: uniform (a permutation per epoch), class-balanced or "
        "group-balanced (each class / attribute group equally likely), weighted "
        "(Method.sample_weights); the last three draw with replacement",
        choices=SAMPLERS,
    ),
    "paired_split": HParam(
        "", help="a second split drawn alongside each training batch (Batch.paired)"
    ),
    "paired_batch_size": HParam(
        0, help="batch size of the paired split (0: the batch size)", valid=NON_NEGATIVE
    ),
}
