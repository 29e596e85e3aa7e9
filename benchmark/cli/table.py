"""``bench table [--results DIR] [--json|--csv]``: aggregate all stored runs."""

from __future__ import annotations

import argparse
import fnmatch
from typing import Any


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "table",
        parents=[common],
        help="aggregate stored runs",
        description="One row per (dataset, method, settings): mean ± std "
        "(ddof 1) over seeds, and the number of seeds.",
    )
    p.add_argument("--results", help="results folder (else $BENCH_RESULTS, else ./results)")
    p.add_argument("--dataset", help="fnmatch filter on dataset names")
    p.add_argument("--method", help="fnmatch filter on method names")
    p.add_argument("--metrics", help="comma-separated metric keys to show")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="long format as JSON records")
    fmt.add_argument("--csv", action="store_true", help="long format as CSV")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from benchmark.errors import BenchError, UnknownNameError
    from benchmark.metric import METRICS
    from benchmark.store import Store
    from benchmark.tables import aggregate, render, wide

    store = Store(args.results)
    if not store.root.is_dir():
        raise BenchError(f"no results folder {store.root} (give --results DIR, or run first)")
    stored = list(store.records())
    records = [
        r
        for r in stored
        if (not args.dataset or fnmatch.fnmatch(r.dataset, args.dataset))
        and (not args.method or fnmatch.fnmatch(r.method, args.method))
    ]
    if stored and not records:  # a filter that matches nothing is a mistake, not "no runs"
        have = sorted({f"{r.method} on {r.dataset}" for r in stored})
        shown = ", ".join(have[:8]) + (", ..." if len(have) > 8 else "")
        raise BenchError(
            f"no run in {store.runs} matches --dataset {args.dataset or '*'} --method "
            f"{args.method or '*'} (stored: {shown})"
        )
    agg = aggregate(records)
    if args.metrics:
        known = set(agg["metric"]) if not agg.empty else set()
        for _, cls in METRICS.items():
            known |= set(cls.higher_is_better)
        for key in args.metrics.split(","):
            if key not in known:
                raise UnknownNameError("metric", key, known, hint="--metrics")
    if args.json:
        print(agg.to_json(orient="records", indent=1))
        return 0
    if args.csv:
        print(agg.to_csv(index=False), end="")
        return 0
    if agg.empty:
        print("(no runs)")
        return 0
    metrics = args.metrics.split(",") if args.metrics else None
    blocks = []
    for title, subset in data_blocks(records):
        blocks.append(f"{title} (accuracies in %)\n" + render(wide(aggregate(subset), metrics)))
    print("\n\n".join(blocks))
    return 0


def data_blocks(records: list[Any]) -> list[tuple[str, list[Any]]]:
    """Records split by dataset and dataset fingerprint, so that runs on other data options
    (e.g. ``--set dataset.rho=0.99``) never share a row with the default's; a block's title
    names the options in which the dataset's blocks differ."""
    from benchmark.record import canonical_json

    by_data: dict[tuple[str, str], list[Any]] = {}
    for r in records:
        by_data.setdefault((r.dataset, r.dataset_fingerprint), []).append(r)
    options: dict[str, list[dict[str, Any]]] = {}
    for (dataset, _), subset in by_data.items():
        options.setdefault(dataset, []).append(subset[0].dataset_options)
    out = []
    for (dataset, fingerprint), subset in sorted(
        by_data.items(), key=lambda kv: (kv[0][0], canonical_json(kv[1][0].dataset_options))
    ):
        seen = options[dataset]
        varying = sorted(
            {k for o in seen for k in o if any(o.get(k) != other.get(k) for other in seen)}
        )
        opts = subset[0].dataset_options
        label = ", ".join(f"{k}={opts.get(k)}" for k in varying)
        if not label and len(seen) > 1:  # same options, other data (e.g. another version)
            label = f"fingerprint {fingerprint[:8]}"
        out.append((f"{dataset} [{label}]" if label else dataset, subset))
    return out
