"""``bench verify BUNDLE``: recompute and check a submission, then add its leaderboard rows."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "verify",
        parents=[common],
        help="verify a submission bundle and add its rows to the leaderboard",
        description="Check every hash, every record's id and code, rebuild each dataset and "
        "compare its fingerprint, recompute every metric from the stored predictions, then "
        "append the rows (recomputed numbers) to the leaderboard CSVs. A tampered bundle is "
        "rejected with the reason.",
        epilog="example: bench verify my_submission --leaderboard results/leaderboard",
    )
    p.add_argument("bundle", help="a folder written by bench submit")
    p.add_argument(
        "--leaderboard",
        default="results/leaderboard",
        help="folder of per-dataset CSVs, or one CSV (default: results/leaderboard)",
    )
    p.add_argument("--dry-run", action="store_true", help="check only; write no row")
    p.add_argument("--data-root", help="root folder of real datasets (else $BENCH_DATA)")
    p.add_argument("--device", default="cpu", help="where metrics are recomputed")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from benchmark.device import select_device
    from benchmark.errors import BenchError
    from benchmark.submission import verify

    try:
        result = verify(
            args.bundle,
            leaderboard=args.leaderboard,
            data_root=args.data_root,
            device=select_device(args.device),
            write=not args.dry_run,
        )
    except BenchError as exc:
        raise BenchError(f"bundle {args.bundle} rejected: {exc}") from exc
    print(f"bundle {args.bundle} (id {result.bundle_id}, method {result.method}): verified")
    for line in result.checks:
        print(f"  ok: {line}")
    if result.unverified:
        print(
            "  not recomputable from predictions (left out of the rows): "
            + ", ".join(result.unverified)
        )
    for dataset, path in result.written.items():
        row = result.rows[dataset]
        print(f"row added to {path}: {row['method']} on {dataset}, seeds {row['seeds']}")
        print(f"  reproduce: {row['reproduce']}")
    if not result.written and not result.quick and args.dry_run:
        print("dry run: no row written")
    return 0
