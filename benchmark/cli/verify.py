"""``bench verify BUNDLE``: recompute and check a submission, then add its leaderboard rows."""

from __future__ import annotations

import argparse
import textwrap
from typing import Any


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "verify",
        parents=[common],
        help="verify a submission bundle and add its rows to the leaderboard",
        description=textwrap.dedent(
            """\
            Check every hash, every record's id and code, rebuild each dataset and compare its
            fingerprint, recompute every metric from the stored predictions, then append the
            rows (recomputed numbers) to the leaderboard CSVs, each with its verification
            level: predictions (these checks), reinferred (--rerun) or retrained (--retrain).
            A tampered bundle is rejected with the reason.

            WARNING: --rerun and --retrain RUN THE BUNDLE'S CODE (its plugin is imported in a
            separate process, with your permissions). Without them no bundled code is run.

            The official leaderboard (results/leaderboard of this checkout, or --official)
            accepts rows verified at reinferred or better whose runs follow the registered
            protocol."""
        ),
        epilog="examples:\n  bench verify my_submission --leaderboard my_leaderboard/\n"
        "  bench verify my_submission --rerun --leaderboard results/leaderboard",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("bundle", help="a folder written by bench submit")
    p.add_argument(
        "--leaderboard",
        default="results/leaderboard",
        help="folder of per-dataset CSVs, or one CSV (default: results/leaderboard)",
    )
    p.add_argument("--dry-run", action="store_true", help="check only; write no row")
    p.add_argument(
        "--rerun",
        action="store_true",
        help="level reinferred: rebuild each run's model from the bundled checkpoint with the "
        "bundled plugin (RUNS THE BUNDLE'S CODE, in a separate process), predict the "
        "evaluation splits and require the stored predictions to match",
    )
    p.add_argument(
        "--retrain",
        action="store_true",
        help="level retrained: --rerun, and also train the protocol's seeds again from the "
        "bundled plugin (RUNS THE BUNDLE'S CODE) and require the recorded metrics to match",
    )
    p.add_argument(
        "--official",
        action="store_true",
        help="apply the official leaderboard's rules to --leaderboard (registered protocol, "
        "reinferred or better); automatic for this checkout's results/leaderboard",
    )
    p.add_argument("--data-root", help="root folder of real datasets (else $BENCH_DATA)")
    p.add_argument("--device", default="cpu", help="where metrics are recomputed (and rerun)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from benchmark.device import select_device
    from benchmark.errors import BenchError
    from benchmark.submission import verify

    level = "retrained" if args.retrain else "reinferred" if args.rerun else "predictions"
    try:
        result = verify(
            args.bundle,
            leaderboard=args.leaderboard,
            data_root=args.data_root,
            device=select_device(args.device),
            write=not args.dry_run,
            level=level,
            official=True if args.official else None,
        )
    except BenchError as exc:
        raise BenchError(f"bundle {args.bundle} rejected: {exc}") from exc
    print(
        f"bundle {args.bundle} (id {result.bundle_id}, method {result.method}): verified at "
        f"level {result.level}"
    )
    for line in result.checks:
        print(f"  ok: {line}")
    if result.unverified:
        print(
            "  not recomputable from predictions (left out of the rows): "
            + ", ".join(result.unverified)
        )
    for dataset, path in result.written.items():
        row = result.rows[dataset]
        print(
            f"row added to {path}: {row['method']} on {dataset}, seeds {row['seeds']}, "
            f"verification {row['verification']}"
        )
        print(f"  reproduce: {row['reproduce']}")
    if not result.written and not result.quick and args.dry_run:
        print("dry run: no row written")
    return 0
