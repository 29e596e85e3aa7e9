"""``bench list [methods|datasets|metrics] [PATTERN] [--json]``."""

from __future__ import annotations

import argparse
import inspect
import json
from typing import Any

from benchmark.plugins import KINDS, failures, registry


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "list",
        parents=[common],
        help="list methods, datasets and metrics",
        description="List registered plugins and plugins that failed to load.",
    )
    p.add_argument("kind", nargs="?", choices=KINDS, help="only this kind")
    p.add_argument("pattern", nargs="?", help="fnmatch filter on names, e.g. 'decouple-*'")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=main)


def describe(obj: Any) -> str:
    text = getattr(obj, "description", "") or inspect.getdoc(obj) or ""
    return text.strip().splitlines()[0] if text.strip() else ""


def rows(kind: str, pattern: str | None) -> list[dict[str, Any]]:
    reg = registry(kind)
    out = []
    for name in reg.names(pattern):
        obj = reg.get(name)
        row: dict[str, Any] = {"name": name}
        if kind == "methods":
            row["tracks"] = ",".join(obj.tracks)
            row["base"] = obj.base or ""
        elif kind == "datasets":
            row["track"] = obj.track
            row["download"] = "needs data" if obj.needs_data_root else "built-in"
        else:
            row["tracks"] = ",".join(obj.tracks) if obj.tracks else "all"
            row["keys"] = ",".join(obj.higher_is_better)
        row["description"] = describe(obj)
        row["origin"] = reg.origin(name)
        out.append(row)
    return out


def main(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    kinds = [args.kind] if args.kind else list(KINDS)
    broken = [f for f in failures() if f.kind == "plugin" or f.kind + "s" in kinds]
    if args.json:
        payload = {k: rows(k, args.pattern) for k in kinds}
        payload["failed"] = [f.__dict__ for f in broken]
        print(json.dumps(payload, indent=1))
        return 0
    for kind in kinds:
        table = [{k: v for k, v in r.items() if k != "origin"} for r in rows(kind, args.pattern)]
        print(f"{kind} ({len(table)})")
        print(tabulate(table, headers="keys", tablefmt="simple") if table else "  (none)")
        print()
    if broken:
        print("failed to load:")
        for f in broken:
            print(f"  {f.kind} {f.source}: {f.error}")
    return 0
