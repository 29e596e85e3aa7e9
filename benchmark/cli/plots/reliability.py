"""``bench plot reliability``: reliability diagrams (Guo et al. 2017, Fig. 1), one panel per
method (several methods side by side on one PNG).

Reads the stored records' ``calibration`` details of ``--split`` (default ``test``): the 15
equal-width confidence bins with their counts, accuracies and mean confidences. The seeds of a
group are pooled (counts summed, accuracy and confidence weighted by count). Bars: accuracy
per bin; the red part is the gap to the bin's mean confidence; the diagonal is perfect
calibration; the title of each panel gives the pooled ECE.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from benchmark.cli.plots import PlotKind, register_plot
from benchmark.cli.plots.ood_common import grouped_records, png


@register_plot("reliability")
class Reliability(PlotKind):
    """Accuracy against confidence per bin, one panel per method (calibration)."""

    help = "reliability diagrams: accuracy vs confidence per bin (calibration)"

    def main(self, args: argparse.Namespace) -> int:
        return main(args)


def pooled_bins(records: list[Any], split: str) -> dict[str, np.ndarray]:
    """Bins pooled over the records: ``lo``, ``hi``, ``count``, ``accuracy``, ``confidence``."""
    first = records[0].details[split]["calibration"]["bins"]
    lo = np.array([b["lo"] for b in first])
    hi = np.array([b["hi"] for b in first])
    count = np.zeros(len(first))
    correct = np.zeros(len(first))
    conf = np.zeros(len(first))
    for r in records:
        for i, b in enumerate(r.details[split]["calibration"]["bins"]):
            count[i] += b["count"]
            correct[i] += b["accuracy"] * b["count"]
            conf[i] += b["confidence"] * b["count"]
    n = np.maximum(count, 1)
    return {"lo": lo, "hi": hi, "count": count, "accuracy": correct / n, "confidence": conf / n}


def draw(groups: list[dict[str, Any]], split: str, title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(4, len(groups))
    rows = -(-len(groups) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.4 * rows), dpi=110, squeeze=False)
    for ax in axes.flat[len(groups) :]:
        ax.axis("off")
    for ax, g in zip(axes.flat, groups):
        b = pooled_bins(g["records"], split)
        width = b["hi"] - b["lo"]
        used = b["count"] > 0
        ece = float((b["count"] * np.abs(b["accuracy"] - b["confidence"])).sum() / b["count"].sum())
        ax.bar(b["lo"][used], b["accuracy"][used], width[used], align="edge", color="tab:blue",
               edgecolor="k", lw=0.5, label="accuracy")  # fmt: skip
        gap_lo = np.minimum(b["accuracy"], b["confidence"])[used]
        gap = np.abs(b["accuracy"] - b["confidence"])[used]
        ax.bar(b["lo"][used], gap, width[used], bottom=gap_lo, align="edge", color="tab:red",
               alpha=0.45, edgecolor="tab:red", lw=0.5, label="gap to confidence")  # fmt: skip
        ax.plot([0, 1], [0, 1], "k--", lw=1)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        n = len(g["records"])
        ax.set_title(f"{g['label']}\nECE {100 * ece:.2f}% (n={n} seed{'s' * (n > 1)})", fontsize=9)
        ax.set_xlabel("confidence (max probability)")
        ax.set_ylabel("accuracy")
        ax.legend(loc="upper left", fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return png(fig)


def main(args: argparse.Namespace) -> int:
    from benchmark.cli.checks import output_file
    from benchmark.io import atomic_write_bytes
    from benchmark.store import Store

    out = output_file(args.out, "--out", ".png") if args.out else None
    split = args.split

    def has(r: Any) -> bool:
        return bool(r.details.get(split, {}).get("calibration", {}).get("bins"))

    dataset, groups = grouped_records(args, f"calibration bins on split '{split}'", has)
    out = out or Store(args.results).root / "plots" / f"reliability-{dataset}-{split}.png"
    atomic_write_bytes(out, draw(groups, split, f"{dataset} ({split}): reliability"))
    print(f"wrote {out}")
    return 0
