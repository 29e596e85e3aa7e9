"""``bench compare [RUN_IDS] [--results DIR] --leaderboard CSV``: where your runs rank."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "compare",
        parents=[common],
        help="rank your runs against a leaderboard CSV",
        description="Aggregate your runs (given ids, or every run in --results) over seeds and "
        "rank them among a leaderboard's rows, with deltas. Rows of another dataset "
        "fingerprint or schema version are refused, never compared.",
        epilog="example: bench compare --results my_results "
        "--leaderboard results/leaderboard/glyph-lt.csv",
    )
    p.add_argument("run_ids", nargs="*", help="run ids or unique prefixes (default: all runs)")
    p.add_argument("--results", help="results folder (else $BENCH_RESULTS, else ./results)")
    p.add_argument("--leaderboard", required=True, help="a leaderboard CSV")
    p.add_argument("--metric", help="metric key to rank by (default: the headline metric)")
    p.add_argument("--json", action="store_true", help="the ranked rows as JSON")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from benchmark.errors import BenchError
    from benchmark.leaderboard import (
        build_row,
        check_comparable,
        group_records,
        read_leaderboard,
    )
    from benchmark.store import Store

    board = read_leaderboard(args.leaderboard)
    store = Store(args.results)
    records = [store.get(i) for i in args.run_ids] if args.run_ids else list(store.records())
    datasets = {r["dataset"] for r in board.rows}
    mine = [r for r in records if r.dataset in datasets] if datasets else records
    if not mine:
        have = ", ".join(sorted({r.dataset for r in records})) or "no runs"
        raise BenchError(
            f"none of your runs is on {', '.join(sorted(datasets))} (you have: {have})"
        )
    yours = [build_row(g, source="yours") for g in group_records(mine)]
    for row in yours:
        check_comparable(board, row["dataset"], row["dataset_fingerprint"], what="run")
    key = args.metric or headline(board.metrics, yours)
    ranked = rank([*board.rows, *yours], key)
    if args.json:
        print(json.dumps(ranked, indent=1))
        return 0
    print(render_ranking(ranked, key, board))
    return 0


def headline(board_metrics: list[str], yours: list[dict[str, str]]) -> str:
    from benchmark.errors import BenchError
    from benchmark.metric import direction

    for key in board_metrics:
        if direction(key.split("@")[0]) is not None and all(f"{key}_mean" in r for r in yours):
            return key
    raise BenchError("no metric is shared by your runs and the leaderboard; pass --metric")


def rank(rows: list[dict[str, str]], key: str) -> list[dict[str, Any]]:
    """Rows sorted best first by ``key`` (its declared direction); "—" values last."""
    from benchmark.errors import BenchError
    from benchmark.metric import direction

    higher = direction(key.split("@")[0])
    if higher is None:
        raise BenchError(f"metric {key!r} declares no direction; cannot rank by it")
    if not any(f"{key}_mean" in r for r in rows):
        raise BenchError(f"no row has metric {key!r}")

    def value(row: dict[str, str]) -> float:
        text = row.get(f"{key}_mean", "")
        return float(text) if text else math.nan

    def order(row: dict[str, str]) -> tuple[int, float]:
        v = value(row)
        return (1, 0.0) if math.isnan(v) else (0, -v if higher else v)

    mine = sorted((r for r in rows if r["source"] == "yours"), key=order)[:1]  # your best
    ranked = []
    for row in sorted(rows, key=order):
        better = sum(order(o) < order(row) for o in rows)  # ties share a rank
        item: dict[str, Any] = {"rank": better + 1, **row}
        item["value"] = value(row)
        item["delta_vs_yours"] = [value(row) - value(m) for m in mine]
        ranked.append(item)
    return ranked


def render_ranking(ranked: list[dict[str, Any]], key: str, board: Any) -> str:
    from tabulate import tabulate

    from benchmark.leaderboard import level
    from benchmark.tables import _scale, arrow, fmt

    scale = _scale(key)
    mine = [r for r in ranked if r["source"] == "yours"]
    table = []
    labels = row_labels(ranked)
    for r, label in zip(ranked, labels):
        n = int(r["n"])
        std = float(r.get(f"{key}_std") or "nan")
        label += " ← yours" if r["source"] == "yours" else ""
        deltas = [
            "" if math.isnan(d) or r["source"] == "yours" else f"{d * scale:+.2f}"
            for d in r["delta_vs_yours"]
        ]
        table.append(
            [r["rank"], label, r["selection"], level(r), n, fmt(r["value"], std, n, scale), *deltas]
        )
    headers = ["rank", "method", "selection", "verification", "n", key + arrow(key)]
    headers.append("Δ vs yours" if len(mine) == 1 else "Δ vs your best")
    lines = [
        f"{board.path}: {len(board.rows)} leaderboard row(s), dataset fingerprint "
        f"{', '.join(sorted(board.fingerprints())) or '-'}; ranked by {key}{arrow(key)} "
        f"(in %; Δ = row − yours (your best row), in points)",
        tabulate(table, headers=headers, tablefmt="github", disable_numparse=True),
    ]
    total = len(ranked)
    if len(mine) > 10:
        lines.append(f"(the first 10 of your {len(mine)} rows below)")
    for i, m in enumerate(mine[:10], start=1):
        top = ranked[0]["value"]
        gap = (m["value"] - top) * scale if not math.isnan(m["value"]) else math.nan
        tag = f" #{i}" if len(mine) > 1 else ""
        lines.append(
            f"yours{tag} ({m['method']}, seeds {m['seeds']}): rank {m['rank']} of {total}"
            + ("" if m["rank"] == 1 or math.isnan(gap) else f", {gap:+.2f} points from first")
        )
        core = {r["core_hash"] for r in board.rows}
        if core and m["core_hash"] not in core:
            lines.append(
                "  note: your runs used other core code than the leaderboard's rows "
                f"(core {m['core_hash'][:8]} vs {', '.join(sorted(c[:8] for c in core))})"
            )
    return "\n".join(lines)


def row_labels(rows: list[dict[str, Any]]) -> list[str]:
    """Method names, plus the hyperparameters that differ between rows of one method."""
    hps = [json.loads(r["hparams"]) for r in rows]
    labels = []
    for r, hp in zip(rows, hps):
        same = [h for o, h in zip(rows, hps) if o["method"] == r["method"]]
        varying = sorted({k for h in same for k in h if any(h.get(k) != o.get(k) for o in same)})
        parts = [f"{k}={hp.get(k)}" for k in varying]
        labels.append(f"{r['method']} ({', '.join(parts)})" if parts else r["method"])
    return labels
