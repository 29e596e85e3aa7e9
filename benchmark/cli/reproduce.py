"""``bench reproduce``: run a paper study and say, per claim, whether it reproduces here."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from benchmark.cli.checks import at_least

EPILOG = """examples:
  bench reproduce --list
  bench reproduce tde-glyph-lt
  bench reproduce tde-cifar100-lt --data-root /data
  bench reproduce mdn-synthetic --no-run          # judge the stored runs only
  bench reproduce longtail-baselines-glyph-lt --launcher gpus

exit codes: 0 every claim reproduced; 1 a run failed; 2 usage (unknown study, bad option);
3 a claim did not reproduce; 4 a claim did not run because its data is missing (the others
ran); 5 with --no-run, runs a claim needs are not stored. The first that applies, in this
order: 1, 3, 4, 5.

Runs are content-addressed: a stored run is reused only when it was made by the same code,
data, settings and environment (torch version, CPU instruction set and thread count, or GPU).
"""


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "reproduce",
        parents=[common],
        help="run a paper study and check its claims",
        description="Run the runs of a paper study that are missing (through the sweep "
        "machinery: resumable, any launcher), then print each claim's published and measured "
        "numbers with a verdict: reproduced, not reproduced, or not run (data missing).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("study", nargs="*", help="study names (bench reproduce --list)")
    p.add_argument("--list", action="store_true", help="list the studies and their data needs")
    p.add_argument("--no-run", action="store_true", help="run nothing; judge the stored runs")
    p.add_argument("--launcher", default="local", choices=("local", "gpus", "slurm"))
    p.add_argument(
        "--max-parallel", type=at_least(1), help="cap on runs (or cluster jobs) in flight"
    )
    p.add_argument("--data-root", help="root folder of real datasets (else $BENCH_DATA)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    p.add_argument("--results", help="results folder (else $BENCH_RESULTS, else ./results)")
    p.add_argument("--json", action="store_true", help="print the verdicts as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from benchmark.cli.studies import STUDIES, load_studies
    from benchmark.errors import BenchError

    load_studies()
    if args.list:
        print(list_text(args.data_root))
        return 0
    if not args.study:
        raise BenchError("name a study (bench reproduce --list shows them)")
    studies = [STUDIES.get(name) for name in dict.fromkeys(args.study)]  # unknown: exit 2
    from benchmark.cli.studies import evaluate, hint_lines, report_lines
    from benchmark.store import Store

    store = Store(args.results)
    launcher = None
    if not args.no_run:
        from benchmark.launchers import make_launcher

        launcher = make_launcher(
            args.launcher,
            device=args.device,
            data_root=args.data_root,
            progress=not args.quiet,
            max_parallel=args.max_parallel,
        )
    results = []
    for study in studies:
        first = evaluate(study, store, data_root=args.data_root, device=args.device)
        for line in hint_lines(first):
            print(line, file=sys.stderr)
        if first.missing and launcher is not None:
            result = evaluate(
                study, store, launcher=launcher, data_root=args.data_root, device=args.device
            )
            result.stored = first.stored
        else:
            result = first
        results.append(result)
        if not args.json:
            print("\n".join(report_lines(result)))
            if args.no_run and result.missing:
                print(f"  not stored ({len(result.missing)}):")
                print("\n".join(f"    {c}" for c in result.missing))
    if args.json:
        print(json.dumps([as_json(r) for r in results], indent=1))
    codes = [r.exit_code() for r in results]
    for code in (1, 3, 4, 5):
        if code in codes:
            return code
    return 0


def list_text(data_root: str | None) -> str:
    """Every study: paper, dataset, runs, claims, and what its data needs (here or not)."""
    from tabulate import tabulate

    from benchmark.cli.studies import STUDIES
    from benchmark.dataset import DATASETS

    rows = []
    for name, study in STUDIES.items():
        dcls = DATASETS.get(study.dataset)
        needs = study.data
        if getattr(dcls, "needs_data_root", False):
            needs += f" ({data_status(study, data_root)})"
        rows.append(
            (
                name,
                study.paper.split(":")[0],
                study.dataset,
                f"{len(study.methods)} × {len(study.seeds)}",
                len(study.claims),
                needs,
            )
        )
    return tabulate(
        rows,
        headers=["study", "paper", "dataset", "runs", "claims", "data"],
        tablefmt="github",
        disable_numparse=True,
    )


def data_status(study: Any, data_root: str | None) -> str:
    """Where the study's real data is looked for, or why it is missing (with the layout the
    dataset expects); the data itself is read only when the study runs."""
    from benchmark.data import data_root as find_data_root
    from benchmark.dataset import DATASETS

    dcls = DATASETS.get(study.dataset)
    root = find_data_root(study.dataset, data_root)
    if root is None:
        return str(dcls.missing(None, "no data root given")).removeprefix(f"{dcls.name}: ")
    if not root.exists():
        return str(dcls.missing(root, "the folder does not exist")).removeprefix(f"{dcls.name}: ")
    return f"data root {root}"


def as_json(result: Any) -> dict[str, Any]:
    study = result.study
    return {
        "study": study.name,
        "paper": study.paper,
        "dataset": study.dataset,
        "methods": list(study.methods),
        "seeds": list(study.seeds),
        "settings": dict(study.settings),
        "data_missing": result.data_missing,
        "ran": result.ran,
        "stored": result.stored,
        "failed": result.failed,
        "missing": result.missing,
        "exit_code": result.exit_code(),
        "claims": [
            {
                "claim": c.claim.text(),
                "metric": c.claim.metric,
                "verdict": c.verdict,
                "why": c.why,
                "published": [
                    {
                        "setting": p.setting,
                        "values": dict(p.values),
                        "source": p.source,
                        "verified": p.verified,
                    }
                    for p in c.claim.published
                ],
                "measured": {
                    m.method: {"values": m.values, "run_ids": m.run_ids} for m in c.measured
                },
            }
            for c in result.claims
        ],
    }
