"""``bench list [methods|datasets|metrics] [PATTERN] [--json]``.

Served from the plugin index (``benchmark.plugins.index``): no plugin, and not torch, is
imported unless a plugin file changed since the index was written.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
from typing import Any

from benchmark.plugins.index import KINDS, describe, load_index
from benchmark.registry import relpath

__all__ = ["add_parser", "describe", "main"]


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
    p.set_defaults(func=main, loads_plugins_itself=True)


def main(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    index = load_index(tuple(args.plugin))
    kinds = [args.kind] if args.kind else list(KINDS)
    broken = [
        {
            **f,
            "source": relpath(f["source"]) if not f["source"].startswith("entry") else f["source"],
        }
        for f in index.failed
        if f["kind"] == "plugin" or f["kind"] + "s" in kinds
    ]

    def rows(kind: str) -> list[dict[str, Any]]:
        return [
            r
            for r in index.rows.get(kind, [])
            if args.pattern is None or fnmatch.fnmatch(r["name"], args.pattern)
        ]

    if args.json:
        payload: dict[str, Any] = {k: rows(k) for k in kinds}
        payload["failed"] = broken
        print(json.dumps(payload, indent=1))
        return 0
    for kind in kinds:
        table = [{k: v for k, v in r.items() if k != "origin"} for r in rows(kind)]
        print(f"{kind} ({len(table)})")
        print(tabulate(table, headers="keys", tablefmt="simple") if table else "  (none)")
        print()
    if broken:
        print("failed to load:")
        for f in broken:
            print(f"  {f['kind']} {f['source']}: {f['error']}")
    return 0
