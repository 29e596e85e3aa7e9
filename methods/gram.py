"""Gram-matrix OoD detection (Sastry & Oore, Detecting Out-of-Distribution Examples with Gram
Matrices, ICML 2020, §3; official notebooks ``ResNet_Cifar10.ipynb``).

Features: at every tapped layer (every conv, BN and block output of the base,
``benchmark.tracks.ood.gram_tap_modules``) and order p = 1..``powers`` (10), the row sums of
the Gram matrix ``F^p (F^p)ᵀ`` with the signed p-th root. Bounds: per **predicted** class,
per feature, min and max over the ``train`` split only. Deviation of a sample: per layer, the
relative excursions below the min and above the max of its predicted class, summed over orders
and channels and divided by its max softmax probability. Normalisation: each layer's deviation
is divided by its mean over the ID ``val`` split (the paper draws 10% of the ID *test* set;
bench never fits on test). Score ``−Σ_L δ_L / E_L`` (higher = more ID). Post hoc on the base's
checkpoint; ``powers`` is a test-time knob. The hot loops (features, deviations) are in
``benchmark.tracks.gram``: on the CPU a small C kernel compiled once per machine (the torch
path, same numbers to rounding, when there is no C compiler).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from benchmark import AT_LEAST_ONE, Bundle, HParam, IntUniform, Outputs, Trainer, register_method
from benchmark.tracks.gram import GramTable, gram_deviations, gram_rowsums, gram_table
from benchmark.tracks.ood import (
    GramBounds,
    PostHocDetector,
    batches,
    gram_bounds,
    gram_score,
    gram_tap_modules,
    msp_score,
    recording,
)


@register_method("gram")
class Gram(PostHocDetector):
    """Deviations of Gram-matrix features from per-class training bounds (Sastry & Oore 2020)."""

    paper = "Sastry & Oore, Detecting Out-of-Distribution Examples with Gram Matrices, ICML 2020"
    hparams = {
        "powers": HParam(10, IntUniform(1, 10), "Gram orders p = 1..powers", True,
                         valid=AT_LEAST_ONE),
    }  # fmt: skip

    def _layers(self, x: torch.Tensor) -> tuple[list[torch.Tensor], Outputs]:
        """Gram features of every tap and the base's outputs, in float32 whatever the caller's
        autocast (bf16 on CUDA would move test features off the float32 training bounds)."""
        taps = [m for _, m in gram_tap_modules(self.model)]
        with (
            torch.autocast(x.device.type, enabled=False),
            recording(taps, lambda o: gram_rowsums(o, self.hp.powers)) as store,
        ):
            out = self.base_outputs(x.float())
        return list(store), out

    @torch.no_grad()
    def _over(self, bundle: Bundle, name: str, trainer: Trainer) -> Iterator[tuple]:
        split = self.split(bundle, name)
        self.model.to(trainer.device).eval()
        for _, raw in batches(split, trainer):
            layers, out = self._layers(trainer.normalise(raw, self.info))
            yield layers, out.logits.argmax(1), msp_score(out.logits)

    def calibrate(self, bundle: Bundle, trainer: Trainer) -> None:
        train = ((layers, pred) for layers, pred, _ in self._over(bundle, "train", trainer))
        self.bounds_: GramBounds = gram_bounds(train, self.info.num_classes)
        self.table_: GramTable = gram_table(self.bounds_)
        devs = [
            gram_deviations(*batch, self.table_) for batch in self._over(bundle, "val", trainer)
        ]
        self.bounds_.expected = torch.cat(devs).mean(0) + 1e-7

    def predict_batch(self, x: torch.Tensor) -> Outputs:
        layers, out = self._layers(x)
        dev = gram_deviations(layers, out.logits.argmax(1), msp_score(out.logits), self.table_)
        return Outputs(
            logits=out.logits,
            features=out.features,
            ood_score=gram_score(dev, self.bounds_.expected).float(),
            ood_score_kind=self.name,
        )

    def summary(self) -> dict[str, float]:
        return {"layers": self.bounds_.num_layers, "features": int(self.bounds_.mins.shape[1])}
