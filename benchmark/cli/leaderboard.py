"""``bench leaderboard build|show|rebuild``: versioned leaderboard CSVs from run records."""

from __future__ import annotations

import argparse
import fnmatch
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmark.cli.checks import at_least


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "leaderboard",
        parents=[common],
        help="build or show leaderboard CSVs",
        description="Build one leaderboard CSV per dataset from run records, or show one.",
        epilog="examples:\n  bench leaderboard build --results results\n"
        "  bench leaderboard show results/leaderboard/glyph-lt.csv\n"
        "  bench leaderboard rebuild --dry-run\n"
        "  bench leaderboard rebuild --launcher gpus --max-parallel 2",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    b = actions.add_parser("build", parents=[common], help="write results/leaderboard/*.csv")
    b.add_argument("--results", help="results folder (else $BENCH_RESULTS, else ./results)")
    b.add_argument("--out", help="output folder (default: RESULTS/leaderboard)")
    b.add_argument("--dataset", help="fnmatch filter on dataset names")
    b.add_argument("--method", help="fnmatch filter on method names")
    b.add_argument("--min-seeds", type=at_least(1), default=3, help="seeds a row needs (default 3)")
    b.add_argument(
        "--any-code", action="store_true", help="include records made by other core code"
    )
    b.add_argument(
        "--merge",
        action="store_true",
        help="keep the existing CSV's rows that no new row replaces (same method, --set "
        "settings and selection): add new runs without re-running the others",
    )
    b.set_defaults(func=build)
    s = actions.add_parser("show", parents=[common], help="print a leaderboard CSV")
    s.add_argument("csv", help="a leaderboard CSV")
    s.add_argument("--metrics", help="comma-separated metric keys to show")
    s.set_defaults(func=show)
    r = actions.add_parser(
        "rebuild",
        parents=[common],
        help="re-run every row of a leaderboard with the installed code, then rewrite it",
        description="Re-run every row of the leaderboard CSVs in --from (its reproduce command, "
        "one job per seed) with the code installed here, then rewrite each dataset's CSV from "
        "the new runs and print, per row, the metric that moved most. After a change to a "
        "hashed core file every record is re-keyed: this is the one command that brings the "
        "committed leaderboard back. Runs already stored are read back, not re-run.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument("--from", dest="source", help="leaderboard folder (default RESULTS/leaderboard)")
    r.add_argument("--results", help="results folder (else $BENCH_RESULTS, else ./results)")
    r.add_argument("--out", help="where the rebuilt CSVs go (default: the --from folder)")
    r.add_argument("--dataset", help="fnmatch filter on dataset names (whole CSVs)")
    r.add_argument("--launcher", default="local", choices=("local", "gpus"))
    r.add_argument(
        "--max-parallel",
        type=at_least(1),
        help="gpus launcher: workers (with no GPU: CPU workers, cores/N torch threads each)",
    )
    r.add_argument("--devices", help="gpus launcher: comma-separated GPU ids (default: visible)")
    r.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    r.add_argument("--data-root", help="root folder of real datasets (else $BENCH_DATA)")
    r.add_argument(
        "--threads",
        default="same",
        help="CPU torch threads a run: 'same' as the row's old records (default: the thread "
        "count is part of a CPU run id, so this re-creates the same protocol), or a number",
    )
    r.add_argument(
        "--dry-run", action="store_true", help="list the rows and their cost; run nothing"
    )
    r.add_argument(
        "--pending",
        help="a rebuild in several sittings: rows not rebuilt go to PENDING/<dataset>.csv "
        "(removed when empty) instead of keeping the old CSV, rebuilt rows join --out's CSV "
        "(replacing rows of the same configuration); resume with --from PENDING (--out then "
        "defaults to RESULTS/leaderboard)",
    )
    r.add_argument(
        "--stored-only",
        action="store_true",
        help="run nothing: rebuild the rows whose runs are all stored (after a rebuild that "
        "was stopped, e.g. by a time limit)",
    )
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.set_defaults(func=rebuild)


def build(args: argparse.Namespace) -> int:
    from pathlib import Path

    from benchmark.errors import BenchError
    from benchmark.leaderboard import build as build_csvs
    from benchmark.store import Store
    from benchmark.sweep import sweep_selections

    store = Store(args.results)
    if not store.root.is_dir():
        raise BenchError(f"no results folder {store.root} (give --results DIR, or run first)")
    records = [
        r
        for r in store.records()
        if (not args.dataset or fnmatch.fnmatch(r.dataset, args.dataset))
        and (not args.method or fnmatch.fnmatch(r.method, args.method))
    ]
    out = Path(args.out) if args.out else store.root / "leaderboard"
    result = build_csvs(
        records,
        out,
        min_seeds=args.min_seeds,
        any_code=args.any_code,
        selections=sweep_selections(store),
        merge=args.merge,
    )
    for dataset, path in result.written.items():
        kept = result.kept.get(dataset, 0)
        print(f"{path}: {len(result.rows[dataset])} row(s)" + (f", {kept} kept" if kept else ""))
        for row in result.rows[dataset][kept:]:
            print(f"  {row['method']}: {row['reproduce']}")
    for line in result.left_out:
        print(f"left out: {line}")
    if not result.written:
        print(f"no leaderboard written: no group of {args.min_seeds} seeds in {store.runs}")
        return 1
    return 0


def show(args: argparse.Namespace) -> int:
    from benchmark.leaderboard import read_leaderboard
    from benchmark.tables import render

    board = read_leaderboard(args.csv)
    keys = args.metrics.split(",") if args.metrics else board.metrics
    for key in keys:
        if key not in board.metrics:
            from benchmark.errors import UnknownNameError

            raise UnknownNameError("metric", key, board.metrics, hint=f"in {board.path}")
    print(
        f"{board.path} ({len(board.rows)} rows, dataset fingerprint "
        f"{', '.join(sorted(board.fingerprints())) or '-'})"
    )
    print(render(display_frame(board.rows, keys)))
    for row in board.rows:
        print(f"  {row['method']}: {row['reproduce']}")
    return 0


def display_frame(rows: list[dict[str, str]], keys: list[str], extra: Any = None) -> Any:
    """Rows as a readable frame: method, selection, n, one "mean ± std" column per metric."""
    import pandas as pd

    from benchmark.leaderboard import level
    from benchmark.tables import _scale, arrow, fmt

    out = []
    for row in rows:
        item = {
            "method": row["method"],
            "selection": row["selection"],
            "n": row["n"],
            "verification": level(row),
        }
        for key in keys:
            mean, std = row.get(f"{key}_mean", ""), row.get(f"{key}_std", "")
            item[key + arrow(key)] = (
                fmt(float(mean), float(std or "nan"), int(row["n"]), _scale(key)) if mean else "—"
            )
        out.append(item)
    return pd.DataFrame(out)


def rebuild(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tabulate import tabulate

    from benchmark.device import select_device
    from benchmark.errors import BenchError
    from benchmark.launchers import make_launcher
    from benchmark.leaderboard import (
        old_costs,
        read_old,
        rebuild_plan,
        rebuilt_row,
        row_changes,
        write_leaderboard,
    )
    from benchmark.plugins import load_plugins
    from benchmark.runner import Runner
    from benchmark.store import Store

    store = Store(args.results)
    source = Path(args.source) if args.source else store.root / "leaderboard"
    pending = Path(args.pending) if args.pending else None
    out = Path(args.out) if args.out else source
    if not args.out and pending is not None and _same(source, pending):
        out = store.root / "leaderboard"  # resuming from the pending folder
    if out.exists() and not out.is_dir():
        raise BenchError(f"--out {out} is a file, not a folder")
    if pending is not None and _same(out, pending):
        raise BenchError(f"--pending {pending} is the output folder: give another folder")
    if args.launcher == "local" and args.max_parallel and args.max_parallel > 1:
        raise BenchError("--max-parallel needs --launcher gpus (local runs one at a time)")
    if pending is not None and pending.exists() and not pending.is_dir():
        raise BenchError(f"--pending {pending} is a file, not a folder")
    items = rebuild_plan(source, args.dataset)
    load_plugins(sorted({f for i in items for f in i.plugins}))
    read_old(items, store)
    old_costs(items)
    device = select_device(args.device)
    threads = row_threads(items, args.threads, device.type == "cpu")
    # every job is resolved (names, values, data, run id) before anything trains
    runner = Runner(store, device, args.data_root, progress=False)
    planned: dict = {}
    for item in items:
        with torch_threads(threads[id(item)]):
            for job in item.jobs:
                try:
                    planned[job] = runner.plan(
                        job.method, job.dataset, job.seed, job.settings_dict(), job.extra_splits
                    ).run_id
                except BenchError as exc:
                    item.skipped, item.jobs = str(exc), []
                    break
    todo = {j for i in items for j in i.jobs if not store.has(planned[j])}
    known = [i.cost_s for i in items if i.jobs and i.cost_s is not None]
    lines = []
    for i in items:
        n_todo = sum(1 for j in i.jobs if j in todo)
        cost = "?" if i.cost_s is None else f"{i.cost_s / 60:.1f}"
        status = f"skipped: {i.skipped}" if i.skipped else f"{n_todo} of {len(i.jobs)} to run"
        t = threads[id(i)] or "-"
        lines.append(
            (i.row["dataset"], i.row["method"], _short(i.row["settings"]), t, cost, status)
        )
    print(
        tabulate(
            lines,
            headers=["dataset", "method", "settings", "threads", "old CPU-min", "runs"],
            tablefmt="github",
        )
    )
    print(
        f"{len(items)} row(s) in {source}: {len(todo)} run(s) to do; the old runs took "
        f"{sum(known) / 3600:.2f} CPU-hours ({len(known)} row(s) with their records here)"
    )
    if args.dry_run:
        return 0
    unstored = todo
    if args.stored_only:
        todo = set()
    cost = {j: (i.cost_s or 0.0) / max(1, len(i.jobs)) for i in items for j in i.jobs}
    groups: dict[int | None, list] = {}
    for i in items:
        groups.setdefault(threads[id(i)], []).extend(j for j in i.jobs if j in todo)
    outcomes: dict = {}
    for t, jobs in groups.items():  # one launcher per thread count
        if not jobs:
            continue
        order = sorted(jobs, key=lambda j: -cost[j])  # longest first: workers finish together
        common = dict(device=args.device, data_root=args.data_root, progress=not args.quiet)
        if args.launcher == "gpus":
            devices = args.devices.split(",") if args.devices else None
            workers = args.max_parallel
            if device.type == "cpu" and t and not workers:
                workers = max(1, (os.cpu_count() or 1) // t)
            launcher = make_launcher(
                "gpus", devices=devices, threads=t, max_parallel=workers, **common
            )
        else:
            launcher = make_launcher("local", **common)
        with torch_threads(t):
            outcomes.update(launcher.run(order, store))
    failed = {j: o.error for j, o in outcomes.items() if o.error}
    per_board: dict[Path, list] = {}
    report = []
    for item in items:
        per_board.setdefault(item.board, [])
        where = (item.row["dataset"], item.row["method"], _short(item.row["settings"]))
        errors = [failed[j] for j in item.jobs if j in failed]
        if args.stored_only and not item.skipped:
            missing = sum(1 for j in item.jobs if j in unstored)
            errors = errors or ([f"{missing} run(s) not stored"] if missing else [])
        if item.skipped or errors or not item.jobs:
            per_board[item.board].append(None)
            report.append((*where, "—", f"not rebuilt: {item.skipped or errors[0]}"))
            continue
        new = rebuilt_row(item, [store.get(planned[j]) for j in item.jobs])
        per_board[item.board].append(new)
        key = row_changes(item.row, new)
        was, now = item.row.get(f"{key}_mean") or "—", new.get(f"{key}_mean") or "—"
        report.append((*where, f"{key}: {was} -> {now}" if key else "none", "rebuilt"))
    print(
        tabulate(
            report,
            headers=["dataset", "method", "settings", "largest change of a mean", "row"],
            tablefmt="github",
        )
    )
    if pending is not None:
        return write_in_sittings(items, per_board, out, pending)
    written = 0
    for board, rows in per_board.items():
        target = out / board.name
        if any(r is None for r in rows):
            print(
                f"{target}: not written ({sum(r is None for r in rows)} of {len(rows)} row(s) "
                "not rebuilt; the old file is kept)"
            )
            continue
        write_leaderboard(target, rows)
        written += 1
        print(f"{target}: {len(rows)} row(s) rebuilt")
    return 0 if written == len(per_board) else 1


def _same(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


def write_in_sittings(items: list, per_board: dict, out: Path, pending: Path) -> int:
    """``rebuild --pending``: per CSV, the rebuilt rows join ``out``'s CSV (its rows that are
    neither rows of this rebuild nor of a rebuilt configuration are kept, and on a first
    sitting so are rows that cannot be rebuilt here at all, e.g. of a plugin not installed);
    the rows not rebuilt yet are written, unchanged, to ``pending`` first (so a kill between
    the two writes loses nothing); a pending CSV, and then the folder, is removed once empty.
    0 when nothing is left pending, else 1."""
    from benchmark.leaderboard import read_leaderboard, replaces, row_config, write_leaderboard

    left = 0
    for board, rows in per_board.items():
        mine = [i for i in items if i.board == board]
        new = [r for r in rows if r is not None]
        # rows that cannot be rebuilt here stay where they are: in the CSV on a first sitting
        # (--from is --out), in the pending folder on a later one
        home = _same(board.parent, out)
        todo = [i.row for i, r in zip(mine, rows) if r is None and not (i.skipped and home)]
        stuck = [i.row for i, r in zip(mine, rows) if r is None and i.skipped and home]
        target, later = out / board.name, pending / board.name
        if todo:
            later.parent.mkdir(parents=True, exist_ok=True)
            write_leaderboard(later, todo)
        elif later.exists():
            later.unlink()
        keep = []
        if target.exists():
            ours = {i.row["row_hash"] for i in mine}
            configs = {row_config(r) for r in new}
            keep = [r for r in read_leaderboard(target).rows
                    if r["row_hash"] not in ours and not replaces(configs, r)]  # fmt: skip
        keep += stuck
        if keep or new:
            write_leaderboard(target, [*keep, *new])
        elif target.exists():
            target.unlink()
        left += len(todo)
        print(f"{target}: {len(new)} row(s) rebuilt, {len(keep)} kept; {later}: {len(todo)} "
              "row(s) pending")  # fmt: skip
    if pending.is_dir() and not any(pending.iterdir()):
        pending.rmdir()
    return 0 if left == 0 else 1


def row_threads(items: list, choice: str, cpu: bool) -> dict[int, int | None]:
    """id(row) -> the torch thread count its runs use: ``choice`` as a number, or with
    ``"same"`` the count in the env key of its old records (None when they are not here, or
    not on the CPU: then the current setting)."""
    from benchmark.errors import BenchError

    if choice != "same":
        if not choice.isdigit() or int(choice) < 1:
            raise BenchError(f"--threads {choice}: give 'same' or a whole number >= 1")
        return {id(i): int(choice) if cpu else None for i in items}
    out: dict[int, int | None] = {}
    for i in items:
        counts = {r.env_key.get("threads") for r in i.old} - {None}
        out[id(i)] = counts.pop() if cpu and len(counts) == 1 else None
    return out


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """torch's intra-op thread count set to ``n`` inside the block (unchanged when None)."""
    import torch

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _short(settings: str, width: int = 48) -> str:
    import json

    try:
        pairs = json.loads(settings or "{}")
    except ValueError:
        return settings[:width]
    text = " ".join(f"{k}={v}" for k, v in sorted(pairs.items())) or "(defaults)"
    return text if len(text) <= width else text[: width - 1] + "…"
