"""What a method returns for one split: logits, and when it has them features, an OoD score
and saliency maps. Metrics read these; every tensor has the split's N rows."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import torch


@dataclass
class Outputs:
    """Per-sample outputs of a method on one split.

    ``ood_score``: higher means more in-distribution. ``ood_score_kind`` names it (e.g. "msp").
    ``saliency``: (N, H, W) maps, larger = more important.
    """

    logits: torch.Tensor | None = None
    features: torch.Tensor | None = None
    ood_score: torch.Tensor | None = None
    saliency: torch.Tensor | None = None
    probs_: torch.Tensor | None = None
    ood_score_kind: str = ""
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def probs(self) -> torch.Tensor | None:
        """Class probabilities: given by the method, else the softmax of the logits."""
        if self.probs_ is not None:
            return self.probs_
        if self.logits is None:
            return None
        return torch.softmax(self.logits.float(), dim=1)

    @property
    def preds(self) -> torch.Tensor | None:
        source = self.probs_ if self.probs_ is not None else self.logits
        return None if source is None else source.argmax(dim=1)

    def available(self) -> set[str]:
        """Names of the outputs this object holds (``probs`` and ``preds`` derive from logits)."""
        have = {
            f.name.rstrip("_")
            for f in fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        if "logits" in have or "probs" in have:
            have |= {"probs", "preds"}
        return have

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out = {k: v for k, v in out.items() if isinstance(v, torch.Tensor)}
        out.update({f"extras.{k}": v for k, v in self.extras.items()})
        return out

    @staticmethod
    def cat(parts: list[Outputs]) -> Outputs:
        """Concatenate per-batch outputs along the sample axis."""
        if not parts:
            return Outputs()
        first = parts[0]
        kwargs: dict[str, Any] = {"ood_score_kind": first.ood_score_kind}
        for f in fields(Outputs):
            value = getattr(first, f.name)
            if isinstance(value, torch.Tensor):
                kwargs[f.name] = torch.cat([getattr(p, f.name) for p in parts])
        kwargs["extras"] = {k: torch.cat([p.extras[k] for p in parts]) for k in first.extras}
        return Outputs(**kwargs)

    @staticmethod
    def concat_splits(a: Outputs, b: Outputs) -> Outputs:
        """Outputs of two splits stacked (an ID split followed by an OoD split)."""
        return Outputs.cat([a, b])

    def to(self, device: torch.device | str) -> Outputs:
        kwargs: dict[str, Any] = {"ood_score_kind": self.ood_score_kind}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                kwargs[f.name] = value.to(device)
        kwargs["extras"] = {k: v.to(device) for k, v in self.extras.items()}
        return Outputs(**kwargs)
