"""``bench plot per-class``: per-class accuracy against training frequency, several methods
on one PNG.

Reads the stored records' ``shot-accuracy`` details (``per_class_acc``, ``train_counts``);
runs are grouped like ``bench table`` rows (same method and settings), per-class accuracies are
averaged over the seeds of a group.
"""

from __future__ import annotations

import argparse
import fnmatch
import io
import math
from typing import Any

import numpy as np

from benchmark.cli.checks import at_least
from benchmark.cli.plots import PlotKind, matching_records, register_plot
from benchmark.errors import BenchError


@register_plot("per-class")
class PerClass(PlotKind):
    """Per-class accuracy against the number of training images per class, one colour per
    method (mean over seeds), Many/Medium/Few boundaries marked (long-tail track)."""

    help = "per-class accuracy against training frequency (long tail)"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--bins", type=at_least(1), default=10, help="per-class: log-spaced frequency bins"
        )

    def main(self, args: argparse.Namespace) -> int:
        return main(args)


def collect(records: list[Any], split: str) -> list[dict[str, Any]]:
    """One entry per table row: label, seeds, mean per-class accuracy, train counts, scores."""
    from benchmark.record import canonical_json
    from benchmark.tables import _labels, records_frame

    frame = records_frame(records)
    labels = _labels(frame) if not frame.empty else {}
    groups: dict[str, dict[str, Any]] = {}
    for r in records:
        shot = r.details.get(split, {}).get("shot-accuracy")
        if not shot:
            continue
        # the grouping of benchmark.tables.records_frame: everything but the seed
        key = canonical_json(
            [r.method, r.dataset, r.dataset_fingerprint, r.hparams, r.code.get("hash", "")]
        )
        g = groups.setdefault(
            key,
            {"label": labels[key], "acc": [], "counts": shot["train_counts"], "metrics": []},
        )
        g["acc"].append([np.nan if v is None else v for v in shot["per_class_acc"]])
        g["metrics"].append(r.metrics.get(split, {}))
    out = []
    for g in groups.values():
        acc = _nanmean(np.array(g["acc"], dtype=float))
        scores = {
            k: float(_nanmean(np.array([m.get(k, np.nan) for m in g["metrics"]], dtype=float)))
            for k in ("acc", "many", "medium", "few")
        }
        out.append(
            {
                "label": g["label"],
                "n": len(g["acc"]),
                "per_class": acc,
                "counts": np.array(g["counts"]),
                **scores,
            }
        )
    return out


def draw(series: list[dict[str, Any]], title: str, bins: int = 10) -> bytes:
    """The figure as PNG bytes (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    colors = plt.get_cmap("tab10")
    lo = max(1, min(int(s["counts"].min()) for s in series))
    hi = max(int(s["counts"].max()) for s in series)
    edges = np.geomspace(lo, hi * 1.0001, bins + 1) if hi > lo else np.array([lo, lo + 1])
    for i, s in enumerate(series):
        c = colors(i % 10)
        counts, acc = s["counts"], 100 * s["per_class"]
        jitter = np.exp(np.random.RandomState(i).uniform(-0.04, 0.04, len(counts)))
        ax.scatter(counts * jitter, acc, s=9, color=c, alpha=0.3, linewidths=0)
        which = np.clip(np.digitize(counts, edges) - 1, 0, len(edges) - 2)
        xs, ys = [], []
        for b in range(len(edges) - 1):
            sel = (which == b) & ~np.isnan(acc)
            if sel.any():
                xs.append(math.exp(np.log(counts[sel]).mean()))
                ys.append(acc[sel].mean())
        label = f"{s['label']} (acc {100 * s['acc']:.1f}, few {100 * s['few']:.1f}; n={s['n']})"
        ax.plot(xs, ys, "-o", color=c, lw=2, ms=4, label=label)
    ax.set_xscale("log")
    for x in (20, 100):
        ax.axvline(x, color="0.5", ls="--", lw=1)
    top = 104
    for x, name in ((lo, "few"), (20, "medium"), (100, "many")):
        if lo <= x <= hi or name == "few":
            ax.text(x * 1.05, top, name, color="0.35", fontsize=9, va="bottom")
    ax.set_ylim(-3, 110)
    ax.set_xlabel("training images of the class (log scale)")
    ax.set_ylabel("per-class accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def main(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from benchmark.cli.checks import output_file
    from benchmark.io import atomic_write_bytes
    from benchmark.store import Store

    explicit_out = output_file(args.out, "--out", ".png") if args.out else None
    store = Store(args.results)
    records, patterns = matching_records(args, store)
    datasets = sorted({r.dataset for r in records})
    if len(datasets) > 1:
        raise BenchError(f"runs of several datasets match ({', '.join(datasets)}); use --dataset")
    series = collect(records, args.split)
    if not series:
        where = f" for {args.dataset}" if args.dataset else ""
        raise BenchError(
            f"no runs with per-class accuracies on split '{args.split}' in {store.runs}{where} "
            "(long-tail datasets store them; run e.g. bench run --method ce --dataset glyph-lt)"
        )
    for p in patterns:  # every method asked for must be on the plot
        if not any(fnmatch.fnmatch(s["label"].split(" (")[0], p) for s in series):
            have = sorted({s["label"].split(" (")[0] for s in series})
            raise BenchError(
                f"--method {p!r}: no runs with per-class accuracies on split '{args.split}' "
                f"in {store.runs} (methods with some: {', '.join(have)})"
            )
    if patterns:  # legend in the order the user gave
        order = {p: i for i, p in enumerate(patterns)}

        def rank(s: dict[str, Any]) -> int:
            name = s["label"].split(" (")[0]
            return min((order[p] for p in patterns if fnmatch.fnmatch(name, p)), default=99)

        series.sort(key=rank)
    dataset = datasets[0]
    n = max(s["n"] for s in series)
    title = f"{dataset} ({args.split}): per-class accuracy vs training frequency"
    title += f", mean of {n} seeds" if n > 1 else ""
    out = explicit_out or store.root / "plots" / f"per-class-{dataset}-{args.split}.png"
    atomic_write_bytes(out, draw(series, title, args.bins))
    rows = [
        [s["label"], s["n"]] + [_pct(s[k]) for k in ("acc", "many", "medium", "few")]
        for s in series
    ]
    print(tabulate(rows, headers=["method", "n", "acc", "many", "medium", "few"]))
    print(f"wrote {out}")
    return 0


def _nanmean(a: np.ndarray) -> np.ndarray:
    """Mean over axis 0 ignoring NaN; NaN (no warning) where every value is NaN."""
    valid = ~np.isnan(a)
    total = np.where(valid, a, 0.0).sum(axis=0)
    n = valid.sum(axis=0)
    return np.where(n > 0, total / np.maximum(n, 1), np.nan)


def _pct(v: float) -> str:
    return "—" if v != v else f"{100 * v:.2f}"
