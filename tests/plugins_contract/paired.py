"""Example of ``paired_split``: each labeled batch comes with a batch of a second split
(labeled + unlabeled, for semi-supervised methods); entropy minimisation on the paired one."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmark import Batch, register_method
from benchmark.contracts import TRAINING_OPTIONS
from benchmark.method import Method


@register_method("ex-paired")
class Paired(Method):
    """Cross-entropy on the labeled batch + entropy of the predictions on the paired batch."""

    hparams = {
        "paired_split": TRAINING_OPTIONS["paired_split"],
        "paired_batch_size": TRAINING_OPTIONS["paired_batch_size"],
    }
    protocol_defaults = {"paired_split": "val"}
    seen: list[tuple[int, int, int]] = []  # (labeled batch, paired batch, max paired index)

    def loss(self, batch: Batch) -> torch.Tensor:
        assert batch.paired is not None
        p = batch.paired
        type(self).seen.append((len(batch.y), len(p.y), int(p.index.max())))
        probs = torch.softmax(self.model(p.x), dim=1)
        entropy = -(probs * probs.clamp_min(1e-8).log()).sum(1).mean()
        return F.cross_entropy(self.model(batch.x), batch.y) + 0.1 * entropy
