"""``bench run --method M --dataset D [--seed S ...] [--set k=v ...]``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from benchmark.cli.checks import seed_arg


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "run",
        parents=[common],
        help="train and evaluate a method on a dataset",
        description="Train (or load the cached checkpoint of) a method on a dataset, evaluate "
        "every applicable metric, store one record per seed, print a table.",
        epilog="examples:\n"
        "  bench run --method erm --dataset glyph-lt --seed 0 1 2 --set epochs=5\n"
        "  bench run --method tde ce --dataset glyph-lt   # side by side",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--method",
        required=True,
        nargs="+",
        help="one or more method names (bench list methods), e.g. 'tde ce' or 'tde,ce'; "
        "several are run one after another and printed side by side",
    )
    p.add_argument("--dataset", required=True, help="dataset name (bench list datasets)")
    p.add_argument("--seed", type=seed_arg, nargs="+", default=[0], help="one or more seeds")
    p.add_argument(
        "--set",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="override hyperparameters or dataset options (dataset.KEY / method.KEY); "
        "several per flag (--set epochs=1 lr=0.05) or the flag repeated",
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
    p.set_defaults(func=main, loads_plugins_itself=True)


def method_names(values: list[str]) -> list[str]:
    """``["tde", "ce"]`` from ``--method tde ce`` or ``--method tde,ce`` (duplicates dropped)."""
    names = [n.strip() for v in values for n in v.split(",")]
    return list(dict.fromkeys(n for n in names if n))


def main(args: argparse.Namespace) -> int:
    from benchmark.plugins.index import check_name, load_index

    methods = method_names(args.method)
    index = load_index(tuple(args.plugin))  # unknown names fail here, before torch loads
    for name in methods:
        check_name(index, "methods", name)
    check_name(index, "datasets", args.dataset)

    from benchmark.hparams import parse_assignments

    settings = parse_assignments(args.set)

    from benchmark import distributed
    from benchmark.device import select_device
    from benchmark.plugins import load_plugins
    from benchmark.runner import Runner
    from benchmark.store import Store
    from benchmark.tables import run_table

    load_plugins(args.plugin)
    device = distributed.init_from_env(select_device(args.device))  # torchrun: one rank each
    runner = Runner(
        Store(args.results),
        device,
        args.data_root,
        progress=not args.quiet,
        fast=args.fast,
        protocol=args.protocol,
    )
    runner.store.clean_temporaries()  # left by a killed writer
    records = []
    for method in methods:
        for seed in args.seed:
            record, cached = runner.run(
                method,
                args.dataset,
                seed,
                settings,
                extra_splits=args.eval_split,
                predictions=args.predictions,
            )
            if record is None:  # a torchrun rank other than 0: rank 0 reports
                continue
            if not args.quiet:
                print(
                    f"run {record.run_id}: {method} on {args.dataset}, seed {seed} "
                    f"({run_state(record, cached)})",
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


def run_state(record: Any, cached: bool) -> str:
    """How a run came about: read from the store, or its time and whether it trained."""
    if cached:
        return "already in the store"
    state = f"{record.timings['total_s']:.1f} s"
    if record.timings.get("checkpoint") == "cached":
        state += f"; trained model reused from checkpoint {record.checkpoint[:12]}"
    return state
