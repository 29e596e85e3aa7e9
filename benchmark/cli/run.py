"""``bench run --method M --dataset D [--seed S ...] [--set k=v ...]``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from benchmark.hparams import parse_assignments, seed_arg


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "run",
        parents=[common],
        help="train and evaluate a method on a dataset",
        description="Train (or load the cached checkpoint of) a method on a dataset, evaluate "
        "every applicable metric, store one record per seed, print a table.",
        epilog="example: bench run --method erm --dataset glyph-lt --seed 0 1 2 --set epochs=5",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--method", required=True, help="method name (bench list methods)")
    p.add_argument("--dataset", required=True, help="dataset name (bench list datasets)")
    p.add_argument("--seed", type=seed_arg, nargs="+", default=[0], help="one or more seeds")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a hyperparameter or dataset option (dataset.KEY / method.KEY)",
    )
    p.add_argument("--data-root", help="root folder of real datasets (else $BENCH_DATA)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    p.add_argument(
        "--protocol",
        help="a named training protocol instead of the dataset's own (e.g. cifar100-lt)",
    )
    p.add_argument(
        "--fast",
        default="off",
        choices=("off", "compile", "graph", "compile-graph"),
        help="CUDA only: torch.compile and/or capture each training step in a CUDA graph",
    )
    p.add_argument("--results", help="results folder (else $BENCH_RESULTS, else ./results)")
    p.add_argument(
        "--eval-split",
        action="append",
        default=[],
        metavar="SPLIT",
        help="also evaluate this split (e.g. val; sweeps use it for model selection)",
    )
    p.add_argument(
        "--predictions", action="store_true", help="also store per-sample outputs (predictions/)"
    )
    p.add_argument("--json", action="store_true", help="print the run records as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from benchmark import distributed
    from benchmark.device import select_device
    from benchmark.runner import Runner
    from benchmark.store import Store
    from benchmark.tables import run_table

    settings = parse_assignments(args.set)
    device = distributed.init_from_env(select_device(args.device))  # torchrun: one rank each
    runner = Runner(
        Store(args.results),
        device,
        args.data_root,
        progress=not args.quiet,
        fast=args.fast,
        protocol=args.protocol,
    )
    records = []
    for seed in args.seed:
        record, cached = runner.run(
            args.method,
            args.dataset,
            seed,
            settings,
            extra_splits=args.eval_split,
            predictions=args.predictions,
        )
        if record is None:  # a torchrun rank other than 0: rank 0 reports
            continue
        if not args.quiet:
            state = "already in the store" if cached else f"{record.timings['total_s']:.1f} s"
            print(
                f"run {record.run_id}: {args.method} on {args.dataset}, seed {seed} ({state})",
                file=sys.stderr,
            )
        records.append(record)
    if distributed.active():  # torchrun: leave together once rank 0 has written everything
        distributed.barrier()
        distributed.shutdown()
        if distributed.rank_at_launch() != 0:
            return 0
    if args.json:
        print(json.dumps([r.to_dict() for r in records], indent=1))
    else:
        print(run_table(records))
    return 0
