"""Named training protocols: the recipes of the papers, as data.

A dataset's ``protocol`` is either a dict of settings or the name of one of these (``bench run
--protocol NAME`` picks one explicitly). Values are the shared training settings of
``benchmark.training.PROTOCOL``, plus method-specific recipe values (TDE's ``alpha``, the
moving-average schedule ``ma_schedule``) that only methods declaring them read; ``--set``
overrides any of them.
"""

from __future__ import annotations

from typing import Any

from benchmark.errors import UnknownNameError

PROTOCOLS: dict[str, dict[str, Any]] = {
    # Tang et al. 2020 (TDE), config causal_norm_32.yaml: BBN ResNet-32, 200 epochs, batch 256,
    # SGD lr 0.2 momentum 0.9 wd 5e-4, 5 warm-up epochs from lr/3, x0.01 at 120 and 160,
    # RandomCrop(32, pad 4) + HFlip.
    "cifar-lt": {
        "backbone": "resnet32-bbn",
        "epochs": 200,
        "batch_size": 256,
        "optimizer": "sgd",
        "lr": 0.2,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "schedule": "multistep",
        "milestones": [120, 160],
        "lr_decay": 0.01,
        "warmup_epochs": 5,
        "augment": "crop-flip",
    },
    # Tang et al. 2020 (TDE), config ImageNet_LT/causal_norm.yaml: ResNeXt-50 32x4d from
    # scratch, 90 epochs, batch 512, SGD lr 0.2 momentum 0.9 wd 5e-4, cosine to 0 per epoch.
    "imagenet-lt": {
        "backbone": "resnext50-32x4d",
        "epochs": 90,
        "batch_size": 512,
        "optimizer": "sgd",
        "lr": 0.2,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "schedule": "cosine",
        "warmup_epochs": 0,
        "augment": "none",
        # TDE: alpha 3.0 and the lr-scaled moving-average momentum of the non-CIFAR configs
        "alpha": 3.0,
        "ma_schedule": "lr",
    },
}
# The CIFAR-LT recipe with the per-dataset TDE alpha of the official configs
# (causal_norm_32.yaml: 1.0 for CIFAR-10-LT, 1.5 for CIFAR-100-LT).
PROTOCOLS["cifar10-lt"] = {**PROTOCOLS["cifar-lt"], "alpha": 1.0}
PROTOCOLS["cifar100-lt"] = {**PROTOCOLS["cifar-lt"], "alpha": 1.5}


def protocol(spec: str | dict[str, Any]) -> dict[str, Any]:
    """The settings of a protocol given by name or as a dict."""
    if isinstance(spec, dict):
        return dict(spec)
    if spec not in PROTOCOLS:
        raise UnknownNameError("protocol", spec, PROTOCOLS)
    return dict(PROTOCOLS[spec])
