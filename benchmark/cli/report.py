"""``bench report``: a static HTML page of the leaderboards with plots."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "report",
        parents=[common],
        help="write an HTML page of the leaderboards",
        description="One static HTML page: sortable leaderboard tables, reliability diagrams, "
        "per-class accuracy vs frequency, Insertion/Deletion curves and saliency overlays "
        "where the run records (--results) carry them.",
        epilog="example: bench report --leaderboard results/leaderboard --results results "
        "--out report.html",
    )
    p.add_argument(
        "--leaderboard",
        nargs="+",
        default=["results/leaderboard"],
        help="leaderboard CSVs or folders of them (default: results/leaderboard)",
    )
    p.add_argument("--results", help="results folder with the rows' run records (for plots)")
    p.add_argument("--out", default="report.html", help="output file (default: report.html)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    import time

    from benchmark.cli.checks import output_file
    from benchmark.report import write_report

    output_file(args.out, "--out")
    t0 = time.perf_counter()
    path = write_report(args.out, args.leaderboard, args.results)
    size = path.stat().st_size / 1024
    print(f"wrote {path} ({size:.0f} KiB, {time.perf_counter() - t0:.1f} s)")
    return 0
