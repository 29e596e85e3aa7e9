"""``bench show RUN_ID``: one run record in full."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "show",
        parents=[common],
        help="show one run record",
        description="Show a run record (by id or unique id prefix).",
    )
    p.add_argument("run_id")
    p.add_argument("--results", help="results folder (else $BENCH_RESULTS, else ./results)")
    p.add_argument("--json", action="store_true", help="the raw JSON record")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from benchmark.store import Store
    from benchmark.tables import _scale, arrow, fmt

    record = Store(args.results).get(args.run_id)
    if args.json:
        print(json.dumps(record.to_dict(), indent=1, sort_keys=True))
        return 0
    print(
        f"run {record.run_id}: {record.method} on {record.dataset} ({record.track}), "
        f"seed {record.seed}, created {record.created}"
    )
    print(
        f"dataset version {record.dataset_version}, fingerprint {record.dataset_fingerprint}, "
        f"options {json.dumps(record.dataset_options, sort_keys=True)}"
    )
    rows = [
        (split, key + arrow(key), fmt(value, math.nan, 1, _scale(key)))
        for split, values in record.metrics.items()
        for key, value in values.items()
    ]
    print(checkpoint_line(record))
    print()
    print(
        tabulate(
            rows, headers=["split", "metric", "value"], tablefmt="github", disable_numparse=True
        )
    )
    print("(accuracies, rates and calibration errors in %; dcor2 as is; --json: raw fractions)")
    print()
    print(
        tabulate(
            sorted(record.hparams.items()), headers=["hyperparameter", "value"], tablefmt="github"
        )
    )
    print()
    for title, mapping in (
        ("conventions", record.conventions),
        ("code", record.code),
        ("environment", record.environment),
        ("timings", {k: v for k, v in record.timings.items() if k != "train_history"}),
    ):
        print(f"{title}: " + ", ".join(f"{k}={v}" for k, v in mapping.items()))
    if record.details:
        print(
            f"details: {', '.join(f'{s}/{m}' for s, d in record.details.items() for m in d)} "
            f"(see --json)"
        )
    return 0


def checkpoint_line(record: Any) -> str:
    """Whether the run trained its model or reused a stored checkpoint (post-hoc methods and
    test-time settings reuse the trained model of an earlier run)."""
    key = record.checkpoint or "—"
    if record.timings.get("checkpoint") == "cached":
        return f"model: reused the stored checkpoint {key} (trained by an earlier run)"
    if record.timings.get("checkpoint") == "trained":
        return f"model: trained by this run (checkpoint {key})"
    return f"model: checkpoint {key}"
