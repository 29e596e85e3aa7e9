"""``bench plot [KIND]``: one plot kind per track, registered in ``benchmark/cli/plots/``
(default ``per-class``: per-class accuracy against training frequency)."""

from __future__ import annotations

import argparse
from typing import Any

DEFAULT = "per-class"


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    from benchmark.cli.plots import discover

    kinds = discover()
    names = kinds.names()
    lines = "\n".join(f"  {n:<14} {kinds.get(n).help}" for n in names)
    p = sub.add_parser(
        "plot",
        parents=[common],
        help="draw a plot (PNG) from the stored records (bench plot --help lists the kinds)",
        description=f"Draw one kind of plot (PNG) from the stored run records.\n\nkinds:\n{lines}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: bench plot per-class --dataset glyph-lt --method ce,deconfound,tde",
    )
    p.add_argument(  # no argparse choices: a plugin file may register a kind (checked in main)
        "kind", nargs="?", default=DEFAULT, help=f"plot kind (default {DEFAULT})"
    )
    p.add_argument("--results", help="results folder (else $BENCH_RESULTS, else ./results)")
    p.add_argument("--dataset", help="dataset name (needed when several datasets have runs)")
    p.add_argument("--method", help="comma-separated method names or fnmatch patterns, in order")
    p.add_argument("--split", default="test", help="evaluated split (default test)")
    p.add_argument("--out", help="PNG file (default RESULTS/plots/KIND-DATASET-SPLIT.png)")
    for name in names:
        kinds.get(name)().add_arguments(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from benchmark.cli.checks import output_file
    from benchmark.cli.plots import discover

    if args.out:  # every kind writes one PNG: a wrong --out is refused before any work
        output_file(args.out, "--out", ".png")
    return discover().get(args.kind)().main(args)  # unknown: one line with the closest names
