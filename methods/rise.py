"""RISE: randomized input sampling for explanation (Petsiuk, Das, Saenko, BMVC 2018, §3,
Eq. 6; ``generate_masks`` / ``explain`` of the official code eclique/RISE).

Post hoc on the cached ``erm`` classifier, black box: N random masks (an s×s binary grid with
keep probability p1, bilinearly upsampled with a random shift, ``methods.md`` §9.1), shared by
every image of a split and drawn from ``method.rng`` (seeded by seed and split); the saliency of
the top-1 class is ``S_c = Σ_i P_c(x ⊙ M_i) M_i / (N p1)`` on the normalised image, min-max
normalised to [0, 1] (the raw ``S_c`` is ``extras["saliency_raw"]``). Every (image, mask) pair
runs through the model in batches on the device.

``n_masks`` / ``cells`` / ``p1`` = 0 (default) choose by image side (``rise_settings``): up
to 64 px the RISE Keras demo's (2000, 8, 0.5); larger the evaluation notebook's (5000, 10,
0.1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from benchmark import HParam, Range, Valid, register_method
from benchmark.tracks.explain import (
    minmax,
    predicted_class,
    rise_masks,
    rise_saliency,
    rise_settings,
)
from benchmark.tracks.posthoc import PosthocExplainer, classifier_logits


@dataclass(frozen=True)
class ZeroOrAtLeast(Valid):
    """0 (= choose by image size) or a whole number ≥ ``low``."""

    low: int

    def ok(self, value: Any) -> bool:
        return (
            isinstance(value, int)
            and not isinstance(value, bool)
            and (value == 0 or value >= self.low)
        )

    def describe(self) -> str:
        return f"0 (by image size) or >= {self.low}"


@register_method("rise")
class RISE(PosthocExplainer):
    """Randomized input sampling: probability-weighted sum of random masks (Petsiuk et al.)."""

    paper = "Petsiuk, Das, Saenko, RISE: Randomized Input Sampling for Explanation, BMVC 2018"
    hparams = {
        "n_masks": HParam(0, help="masks N (0: by image size)", test_time=True, valid=Range(0)),
        "cells": HParam(
            0,
            help="grid cells s per side, 0 or >= 2 (0: by image size)",
            test_time=True,
            valid=ZeroOrAtLeast(2),
        ),
        "p1": HParam(
            0.0, help="keep probability (0: by image size)", test_time=True, valid=Range(0, 1)
        ),
        "mask_batch": HParam(
            256, help="masked images per forward pass", test_time=True, valid=Range(1)
        ),
    }
    smoke_settings = {"n_masks": 8}

    def settings(self, side: int) -> tuple[int, int, float]:
        """(N, s, p1) used at this image side: the hyperparameters, or ``rise_settings``."""
        n, s, p1 = rise_settings(side)
        hp = self.hp
        return hp.n_masks or n, hp.cells or s, hp.p1 or p1

    def masks(self, size: tuple[int, int]) -> torch.Tensor:
        """The split's N masks (drawn once per split from ``self.rng``)."""
        key = (id(self.rng), size)
        if getattr(self, "_masks_key", None) != key:
            n, s, p1 = self.settings(min(size))
            self._masks = rise_masks(n, s, p1, size, self.rng, self.device)
            self._masks_key = key
        return self._masks

    def saliency(self, x: torch.Tensor):
        size = tuple(x.shape[2:])
        masks = self.masks(size)
        logits = classifier_logits(self.model, x)
        target = predicted_class(logits)
        _, _, p1 = self.settings(min(size))

        def probs(batch: torch.Tensor) -> torch.Tensor:
            return torch.softmax(classifier_logits(self.model, batch).float(), dim=1)

        raw = rise_saliency(probs, x, masks, p1, target, self.hp.mask_batch)
        return logits, minmax(raw), raw

    def summary(self) -> dict[str, float]:
        side = min(self.info.input_shape[1:])
        n, s, p1 = self.settings(side)
        return {"n_masks": n, "cells": s, "p1": p1}
