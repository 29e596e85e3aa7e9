"""``bench leaderboard build|show``: versioned leaderboard CSVs from run records."""

from __future__ import annotations

import argparse
import fnmatch
from typing import Any

from benchmark.cli.checks import at_least


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "leaderboard",
        parents=[common],
        help="build or show leaderboard CSVs",
        description="Build one leaderboard CSV per dataset from run records, or show one.",
        epilog="examples:\n  bench leaderboard build --results results\n"
        "  bench leaderboard show results/leaderboard/glyph-lt.csv",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    b = actions.add_parser("build", parents=[common], help="write results/leaderboard/*.csv")
    b.add_argument("--results", help="results folder (else $BENCH_RESULTS, else ./results)")
    b.add_argument("--out", help="output folder (default: RESULTS/leaderboard)")
    b.add_argument("--dataset", help="fnmatch filter on dataset names")
    b.add_argument("--method", help="fnmatch filter on method names")
    b.add_argument("--min-seeds", type=at_least(1), default=3, help="seeds a row needs (default 3)")
    b.add_argument(
        "--any-code", action="store_true", help="include records made by other core code"
    )
    b.set_defaults(func=build)
    s = actions.add_parser("show", parents=[common], help="print a leaderboard CSV")
    s.add_argument("csv", help="a leaderboard CSV")
    s.add_argument("--metrics", help="comma-separated metric keys to show")
    s.set_defaults(func=show)


def build(args: argparse.Namespace) -> int:
    from pathlib import Path

    from benchmark.errors import BenchError
    from benchmark.leaderboard import build as build_csvs
    from benchmark.store import Store
    from benchmark.sweep import sweep_selections

    store = Store(args.results)
    if not store.root.is_dir():
        raise BenchError(f"no results folder {store.root} (give --results DIR, or run first)")
    records = [
        r
        for r in store.records()
        if (not args.dataset or fnmatch.fnmatch(r.dataset, args.dataset))
        and (not args.method or fnmatch.fnmatch(r.method, args.method))
    ]
    out = Path(args.out) if args.out else store.root / "leaderboard"
    result = build_csvs(
        records,
        out,
        min_seeds=args.min_seeds,
        any_code=args.any_code,
        selections=sweep_selections(store),
    )
    for dataset, path in result.written.items():
        print(f"{path}: {len(result.rows[dataset])} row(s)")
        for row in result.rows[dataset]:
            print(f"  {row['method']}: {row['reproduce']}")
    for line in result.left_out:
        print(f"left out: {line}")
    if not result.written:
        print(f"no leaderboard written: no group of {args.min_seeds} seeds in {store.runs}")
        return 1
    return 0


def show(args: argparse.Namespace) -> int:
    from benchmark.leaderboard import read_leaderboard
    from benchmark.tables import render

    board = read_leaderboard(args.csv)
    keys = args.metrics.split(",") if args.metrics else board.metrics
    for key in keys:
        if key not in board.metrics:
            from benchmark.errors import UnknownNameError

            raise UnknownNameError("metric", key, board.metrics, hint=f"in {board.path}")
    print(
        f"{board.path} ({len(board.rows)} rows, dataset fingerprint "
        f"{', '.join(sorted(board.fingerprints())) or '-'})"
    )
    print(render(display_frame(board.rows, keys)))
    for row in board.rows:
        print(f"  {row['method']}: {row['reproduce']}")
    return 0


def display_frame(rows: list[dict[str, str]], keys: list[str], extra: Any = None) -> Any:
    """Rows as a readable frame: method, selection, n, one "mean ± std" column per metric."""
    import pandas as pd

    from benchmark.leaderboard import level
    from benchmark.tables import _scale, arrow, fmt

    out = []
    for row in rows:
        item = {
            "method": row["method"],
            "selection": row["selection"],
            "n": row["n"],
            "verification": level(row),
        }
        for key in keys:
            mean, std = row.get(f"{key}_mean", ""), row.get(f"{key}_std", "")
            item[key + arrow(key)] = (
                fmt(float(mean), float(std or "nan"), int(row["n"]), _scale(key)) if mean else "—"
            )
        out.append(item)
    return pd.DataFrame(out)
