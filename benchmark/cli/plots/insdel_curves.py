"""``bench plot insdel-curves``: the Insertion and Deletion curves of each explainer (class
probability against the fraction of pixels inserted / deleted), mean over seeds, under both
protocols (``id``: ground-truth class on black; ``rise-batch``: the clean prediction, blur and
zero substrates).

Reads the curves stored in the records' details (``insertion-deletion``,
``insertion-deletion-rise``); runs are grouped by method (all seeds of a method).
"""

from __future__ import annotations

import argparse
import io
from typing import Any

import numpy as np

from benchmark.cli.plots import PlotKind, register_plot
from benchmark.cli.plots.saliency import order_by_patterns, select_records
from benchmark.errors import BenchError

#: (metric details name, label, key suffix)
PROTOCOLS = (
    ("insertion-deletion", "protocol id", ""),
    ("insertion-deletion-rise", "protocol rise", "_rise"),
)


@register_plot("insdel-curves")
class InsDelCurves(PlotKind):
    """Insertion and Deletion curves per explainer, one panel per mode and protocol."""

    help = "insertion / deletion curves of each explainer, both protocols (explain)"

    def main(self, args: argparse.Namespace) -> int:
        return main(args)


def collect(records: list[Any], split: str) -> dict[str, dict[str, Any]]:
    """method -> {protocol name -> {fraction, insertion, deletion (mean curves)}, n, scores}."""
    out: dict[str, dict[str, Any]] = {}
    for r in records:
        details = r.details.get(split, {})
        for name, _, suffix in PROTOCOLS:
            d = details.get(name)
            if not d:
                continue
            m = out.setdefault(r.method, {"seeds": set()})
            m["seeds"].add(r.seed)
            p = m.setdefault(name, {"fraction": d["fraction"], "ins": [], "del": [], "auc": []})
            p["ins"].append(d["insertion_curve"])
            p["del"].append(d["deletion_curve"])
            metrics = r.metrics.get(split, {})
            p["auc"].append((metrics.get(f"insertion{suffix}"), metrics.get(f"deletion{suffix}")))
    return out


def draw(series: dict[str, dict[str, Any]], methods: list[str], title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5), dpi=110, squeeze=False)
    colors = plt.get_cmap("tab10")
    for row, (name, label, _) in enumerate(PROTOCOLS):
        for col, (mode, key) in enumerate((("Insertion", "ins"), ("Deletion", "del"))):
            ax = axes[row, col]
            for i, method in enumerate(methods):
                p = series[method].get(name)
                if not p:
                    continue
                n = min(len(c) for c in p[key])
                curve = np.mean([c[:n] for c in p[key]], axis=0)
                aucs = [a[col] for a in p["auc"] if a[col] is not None]
                score = f" (AUC {np.mean(aucs):.3f})" if aucs else ""
                ls = "--" if method.endswith("-saliency") else "-"
                ax.plot(p["fraction"][:n], curve, ls, color=colors(i % 10), lw=1.6,
                        label=f"{method}{score}")  # fmt: skip
            ax.set_title(f"{mode}, {label}", fontsize=10)
            ax.set_xlabel(f"fraction of pixels {'inserted' if key == 'ins' else 'deleted'}")
            ax.set_ylabel("class probability")
            ax.set_xlim(0, 1)
            ax.set_ylim(-0.02, 1.02)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="upper right" if key == "del" else "lower right")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def main(args: argparse.Namespace) -> int:
    from benchmark.cli.checks import output_file
    from benchmark.io import atomic_write_bytes
    from benchmark.store import Store

    explicit_out = output_file(args.out, "--out", ".png") if args.out else None
    store = Store(args.results)
    records, patterns = select_records(args, store)
    series = collect(records, args.split)
    if not series:
        raise BenchError(
            f"no runs with insertion/deletion curves on split '{args.split}' in {store.runs} "
            "(run an explainer, e.g. bench run --method gradcam --dataset objects-masks)"
        )
    methods = order_by_patterns(list(series), patterns)
    dataset = records[0].dataset
    n = max(len(s["seeds"]) for s in series.values())
    title = f"{dataset} ({args.split}): insertion / deletion curves"
    title += f", mean of {n} seeds" if n > 1 else ""
    out = explicit_out or store.root / "plots" / f"insdel-curves-{dataset}-{args.split}.png"
    atomic_write_bytes(out, draw(series, methods, title))
    for method in methods:
        s = series[method]
        parts = []
        for name, label, _ in PROTOCOLS:
            if name in s:
                ins = np.mean([a[0] for a in s[name]["auc"] if a[0] is not None])
                dele = np.mean([a[1] for a in s[name]["auc"] if a[1] is not None])
                parts.append(f"{label}: ins {ins:.3f} del {dele:.3f}")
        print(f"{method} (n={len(s['seeds'])}): " + "; ".join(parts))
    print(f"wrote {out}")
    return 0
