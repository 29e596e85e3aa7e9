"""``bench submit --plugin my_method.py --method NAME``: check, run the protocol, bundle."""

from __future__ import annotations

import argparse
from typing import Any

from benchmark.cli.checks import at_least


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "submit",
        parents=[common],
        help="check a method plugin, run the protocol, write a submission bundle",
        description="Check a method plugin (API, declared hyperparameters, a smoke run), run "
        "the official protocol (or --protocol FILE.toml) with its seeds, and write a bundle of "
        "records, per-sample predictions and environment for `bench verify`.",
        epilog="example: bench submit --plugin my_method.py --method label-smoothing "
        "--datasets glyph-lt --out my_submission",
    )
    p.add_argument("--method", required=True, help="the method the plugin registers")
    p.add_argument("--datasets", nargs="+", help="datasets (default: the protocol's)")
    p.add_argument("--protocol", help="a protocol TOML file (default: the official protocol)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny data, 1 epoch, 2 seeds: checks the pipeline; never enters a leaderboard",
    )
    p.add_argument("--out", help="bundle folder (default: submission-METHOD)")
    p.add_argument("--force", action="store_true", help="replace an existing bundle folder")
    p.add_argument(
        "--results",
        help="results folder for the runs (reused checkpoints); default ./results, with "
        "--quick $BENCH_CACHE/quick-results (tiny-protocol runs stay out of your tables)",
    )
    p.add_argument("--launcher", default="local", choices=("local", "gpus"))
    p.add_argument("--max-parallel", type=at_least(1), help="gpus launcher: workers")
    p.add_argument("--data-root", help="root folder of real datasets (else $BENCH_DATA)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from benchmark.device import select_device
    from benchmark.errors import BenchError
    from benchmark.launchers import make_launcher
    from benchmark.submission import OFFICIAL, Protocol, quick_protocol, submit

    if not args.plugin:
        raise BenchError("bench submit needs the method's file: --plugin my_method.py")
    if args.quick and args.protocol:
        raise BenchError("--quick and --protocol exclude each other")
    device = select_device(args.device)
    if args.protocol:
        protocol = Protocol.load(args.protocol)
    elif args.quick:
        from benchmark.submission import compatible_datasets

        protocol = quick_protocol(compatible_datasets(args.method, args.datasets))
    else:
        protocol = OFFICIAL
    if args.datasets:
        protocol.datasets = list(args.datasets)
    launcher = make_launcher(
        args.launcher,
        device=str(device),
        data_root=args.data_root,
        progress=not args.quiet,
        max_parallel=args.max_parallel,
    )
    out = args.out or f"submission-{args.method}"
    results = args.results
    if results is None and args.quick:  # tiny runs never mix into ./results' tables
        from benchmark.data import cache_dir

        results = str(cache_dir() / "quick-results")
    result = submit(
        args.method,
        args.plugin,
        out,
        protocol=protocol,
        results=results,
        launcher=launcher,
        device=device,
        force=args.force,
    )
    m = result.manifest
    print("plugin checks passed; smoke run passed")
    for note in result.notes:
        print(f"note: {note}")
    print(
        f"bundle {result.path} (id {result.bundle_id}): {len(m['runs'])} runs of {args.method} "
        f"on {', '.join(m['datasets'])}, protocol {m['protocol']['name']} "
        f"(seeds {' '.join(map(str, m['protocol']['seeds']))})"
        + (", QUICK MODE: can never enter a leaderboard" if m["quick"] else "")
    )
    print(
        f"next: bench verify {result.path} (--rerun for the official leaderboard: it runs the "
        f"bundle's code)"
    )
    return 0
