"""``bench plot ood-scores``: histograms of the OoD score, in-distribution ``test`` against each
OoD split (``ood_near``, ``ood_far``, ``ood``), one row per method, one column per OoD split.

Reads the stored records' ``ood`` details (``histogram``: shared equal-width bins over the 0.5th
to 99.5th percentile of the pair's scores, written by ``metrics/ood.py``); a group's lowest
seed is drawn. Each histogram is normalised to its own area, so ID and OoD sets of different
sizes compare; the panel title gives the AUROC (higher score = more in-distribution: a
detector that works puts the blue ID mass to the right of the orange OoD mass).
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from benchmark.cli.plots import PlotKind, register_plot
from benchmark.cli.plots.ood_common import grouped_records, png


@register_plot("ood-scores")
class OoDScores(PlotKind):
    """ID vs OoD score histograms per OoD split, one row per method."""

    help = "histograms of the OoD score: ID test vs each OoD split"

    def main(self, args: argparse.Namespace) -> int:
        return main(args)


def ood_splits(record: Any) -> list[str]:
    return [s for s, d in record.details.items() if d.get("ood", {}).get("histogram")]


def draw(groups: list[dict[str, Any]], splits: list[str], title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols = len(groups), len(splits)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.6 * rows), dpi=110, squeeze=False)
    for i, g in enumerate(groups):
        r = g["records"][0]
        for j, split in enumerate(splits):
            ax = axes[i, j]
            d = r.details.get(split, {}).get("ood", {})
            h = d.get("histogram")
            if not h:
                ax.axis("off")
                continue
            edges = np.array(h["edges"])
            width = np.diff(edges)
            for key, color, name in (("id", "tab:blue", "ID test"), ("ood", "tab:orange", split)):
                c = np.array(h[key], dtype=float)
                dens = c / max(c.sum(), 1) / width
                ax.stairs(dens, edges, fill=True, alpha=0.45, color=color, label=name)
            auroc = r.metrics.get(split, {}).get("auroc", float("nan"))
            ax.set_title(f"{g['label']} (seed {r.seed}), {split}: AUROC {100 * auroc:.1f}",
                         fontsize=8)  # fmt: skip
            ax.set_xlabel(f"score ({d.get('score', '?')}; higher = more ID)", fontsize=8)
            ax.set_yticks([])
            if h.get("clipped"):
                ax.text(0.99, 0.95, f"{h['clipped']} clipped to the ends", fontsize=6,
                        ha="right", va="top", transform=ax.transAxes)  # fmt: skip
            ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return png(fig)


def main(args: argparse.Namespace) -> int:
    from benchmark.cli.checks import output_file
    from benchmark.io import atomic_write_bytes
    from benchmark.store import Store

    out = output_file(args.out, "--out", ".png") if args.out else None
    dataset, groups = grouped_records(args, "OoD score histograms", lambda r: bool(ood_splits(r)))
    splits = sorted({s for g in groups for r in g["records"] for s in ood_splits(r)})
    out = out or Store(args.results).root / "plots" / f"ood-scores-{dataset}.png"
    atomic_write_bytes(out, draw(groups, splits, f"{dataset}: OoD scores, ID vs OoD"))
    print(f"wrote {out}")
    return 0
