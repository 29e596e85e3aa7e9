"""``bench sweep``: methods × datasets × seeds × hyperparameters, resumable, on a launcher."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from benchmark.cli.checks import at_least, seed_arg
from benchmark.cli.run import method_names

EPILOG = """examples:
  bench sweep --method erm --dataset glyph-lt colored-mnist --seed 0 1 2
  bench sweep --method erm --dataset glyph-lt --grid lr=0.01,0.05,0.1 --select val-acc --seed 0 1 2
  bench sweep --method 'erm*' --dataset colored-mnist --random 8 --search lr,weight_decay \\
      --select val-worst-group --seed 0 1 2 --launcher gpus
  bench sweep ... --launcher slurm --slurm-partition gpu --max-parallel 32

Re-running the same command skips every finished run; a sweep killed at any moment resumes
where it stopped. Selection rules: val-acc, val-bacc, val-worst-group, test-oracle (labelled
as an oracle everywhere it appears).
"""


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "sweep",
        parents=[common],
        help="run methods × datasets × seeds × hyperparameters",
        description="Run a sweep: with --grid or --random, search on one seed, pick the best "
        "configuration with --select, then re-run it on every --seed (two-phase protocol).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--method", nargs="+", required=True, help="method names or patterns")
    p.add_argument("--dataset", nargs="+", required=True, help="dataset names or patterns")
    p.add_argument("--seed", type=seed_arg, nargs="+", default=[0], help="seeds of the final runs")
    p.add_argument(
        "--set",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="fixed for every run (several per flag, or the flag repeated)",
    )
    p.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="NAME=V1,V2|NAME:N",
        help="grid axis: explicit values, or N points of the declared search space",
    )
    p.add_argument(
        "--random",
        type=at_least(0),
        default=0,
        metavar="N",
        help="N random configurations (0=defaults)",
    )
    p.add_argument("--search", help="comma-separated hyperparameters drawn by --random")
    p.add_argument("--select", help="model-selection rule (val-acc, val-bacc, ...)")
    p.add_argument("--search-seed", type=seed_arg, help="seed of the search phase (default: first)")
    p.add_argument("--predictions", action="store_true", help="store per-sample outputs")
    p.add_argument("--launcher", default="local", choices=("local", "gpus", "slurm"))
    p.add_argument(
        "--max-parallel", type=at_least(1), help="cap on runs (or cluster jobs) in flight"
    )
    p.add_argument("--devices", help="gpus launcher: comma-separated GPU ids (default: visible)")
    p.add_argument("--slurm-cluster", help="submitit cluster: slurm (default auto) or local")
    p.add_argument("--slurm-partition", help="slurm partition")
    p.add_argument("--slurm-time", type=at_least(1), default=60, help="minutes per cluster job")
    p.add_argument("--slurm-gpus", type=at_least(0), default=0, help="GPUs per cluster job")
    p.add_argument("--slurm-chunk", type=at_least(1), default=1, help="runs per cluster job")
    p.add_argument("--data-root", help="root folder of real datasets (else $BENCH_DATA)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    p.add_argument("--results", help="results folder (else $BENCH_RESULTS, else ./results)")
    p.add_argument("--dry-run", action="store_true", help="list the runs; run nothing")
    p.add_argument("--json", action="store_true", help="print the outcome as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from benchmark.hparams import parse_assignments
    from benchmark.launchers import make_launcher
    from benchmark.store import Store
    from benchmark.sweep import Sweep, SweepSpec, parse_grid

    spec = SweepSpec(
        methods=method_names(args.method),  # 'tde ce' or 'tde,ce', as bench run takes them
        datasets=method_names(args.dataset),
        seeds=list(dict.fromkeys(args.seed)),
        settings=parse_assignments(args.set),
        grid=parse_grid(args.grid),
        random=args.random,
        search=[s.strip() for s in args.search.split(",")] if args.search else None,
        select=args.select,
        search_seed=args.search_seed,
        predictions=args.predictions,
    )
    common = dict(
        device=args.device,
        data_root=args.data_root,
        progress=not args.quiet,
        max_parallel=args.max_parallel,
    )
    if args.launcher == "gpus":
        devices = args.devices.split(",") if args.devices else None
        launcher = make_launcher("gpus", devices=devices, **common)
    elif args.launcher == "slurm":
        launcher = make_launcher(
            "slurm",
            cluster=args.slurm_cluster,
            partition=args.slurm_partition,
            time_min=args.slurm_time,
            gpus_per_job=args.slurm_gpus,
            chunk=args.slurm_chunk,
            **common,
        )
    else:
        launcher = make_launcher("local", **common)
    store = Store(args.results)
    sweep = Sweep(spec, store, launcher)
    if args.dry_run:
        return dry_run(sweep)
    result = sweep.run()
    if args.json:
        print(json.dumps(as_json(result), indent=1))
    else:
        print(summary(result, store))
    return 1 if result.failed else 0


def dry_run(sweep: Any) -> int:
    from tabulate import tabulate

    sweep.check()
    jobs = sweep.plan()
    phase = "search phase (one seed)" if sweep.spec.searching else "runs"
    print(f"{len(jobs)} {phase}:")
    rows = [
        (j.method, j.dataset, j.seed, " ".join(f"{k}={v}" for k, v in j.settings)) for j in jobs
    ]
    print(tabulate(rows, headers=["method", "dataset", "seed", "settings"], tablefmt="github"))
    if sweep.spec.searching:
        print(
            f"then the configuration chosen by {sweep.spec.select} on seeds "
            f"{' '.join(map(str, sweep.spec.seeds))} for each of {len(sweep.pairs)} pair(s)"
        )
    for line in skipped_lines(sweep.skipped):
        print(line)
    return 0


def skipped_lines(skipped: list[str]) -> list[str]:
    """One line for the pairs a track mismatch rules out (``'*'`` makes many), every other
    skip in full."""
    other_track = [s for s in skipped if " runs on tracks " in s]
    lines = [f"skipped: {s}" for s in skipped if s not in other_track]
    if other_track:
        lines.insert(
            0,
            f"skipped: {len(other_track)} (method, dataset) pair(s) of different tracks, "
            f"e.g. {other_track[0]} (--json lists them all)",
        )
    return lines


def as_json(result: Any) -> dict[str, Any]:
    from dataclasses import asdict

    def outcome(o: Any) -> dict[str, Any]:
        d = asdict(o)
        d["job"]["settings"] = dict(o.job.settings)
        return d

    return {
        "search": [outcome(o) for o in result.search.values()],
        "final": [outcome(o) for o in result.final.values()],
        "selections": [asdict(s) for s in result.selections],
        "skipped": result.skipped,
        "seconds": round(result.seconds, 2),
    }


def summary(result: Any, store: Any) -> str:
    from tabulate import tabulate

    from benchmark.tables import run_table

    lines = []
    outcomes = [*result.search.values(), *result.final.values()]
    unique = {o.run_id for o in outcomes if o.run_id}
    ran = {o.run_id for o in outcomes if o.run_id and not o.cached}
    lines.append(
        f"sweep: {len(unique)} runs ({len(ran)} ran now, {len(unique) - len(ran)} already "
        f"stored), {len(result.failed)} failed, {result.seconds:.1f} s"
    )
    if result.selections:
        rows = []
        for s in result.selections:
            label = f"{s.rule} (ORACLE)" if s.oracle else s.rule
            cfg = " ".join(f"{k}={v}" for k, v in s.settings.items()) or "(defaults)"
            rows.append((s.dataset, s.method, label, cfg, f"{s.score * 100:.2f}", len(s.scores)))
        lines.append(
            tabulate(
                rows,
                headers=["dataset", "method", "selection", "chosen", "score %", "configs"],
                tablefmt="github",
                disable_numparse=True,
            )
        )
    lines.extend(skipped_lines(result.skipped))
    for o in result.failed:
        lines.append(f"failed: {o.job.method} on {o.job.dataset} seed {o.job.seed}: {o.error}")
    records = [store.get(o.run_id) for o in result.final.values() if o.run_id]
    for r in records:  # the selection split was for choosing, not for reporting
        r.metrics = {s: v for s, v in r.metrics.items() if s not in r.extra_splits}
    if records:
        lines.append("")
        lines.append(run_table(records))
    if not result.failed:
        print("re-running this command skips every stored run", file=sys.stderr)
    return "\n".join(lines)
