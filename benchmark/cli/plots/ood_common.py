"""Shared by the OoD-track plot kinds (``reliability``, ``ood-scores``): the stored records of
one dataset, grouped like ``bench table`` rows (method and settings; seeds together), in the
order the user gave the methods. Registers no kind."""

from __future__ import annotations

import argparse
import fnmatch
from typing import Any

from benchmark.cli.plots import matching_records
from benchmark.errors import BenchError


def grouped_records(args: argparse.Namespace, what: str, has: Any) -> tuple[str, list[dict]]:
    """(dataset, groups): each group ``{"label", "records"}`` (records sorted by seed) of the
    runs matching ``--dataset`` / ``--method`` for which ``has(record)`` is true. Raises
    ``BenchError`` naming ``what`` when none match, when several datasets do, or when a
    ``--method`` pattern matches no such run."""
    from benchmark.record import canonical_json
    from benchmark.store import Store
    from benchmark.tables import _labels, records_frame

    store = Store(args.results)
    records, patterns = matching_records(args, store)
    records = [r for r in records if has(r)]
    if not records:
        where = f" for {args.dataset}" if args.dataset else ""
        raise BenchError(f"no runs with {what} in {store.runs}{where}")
    datasets = sorted({r.dataset for r in records})
    if len(datasets) > 1:
        raise BenchError(f"runs of several datasets match ({', '.join(datasets)}); use --dataset")
    for p in patterns:
        if not any(fnmatch.fnmatch(r.method, p) for r in records):
            have = ", ".join(sorted({r.method for r in records}))
            raise BenchError(f"--method {p!r}: no runs with {what} (methods with some: {have})")
    labels = _labels(records_frame(records))
    groups: dict[str, dict[str, Any]] = {}
    for r in sorted(records, key=lambda r: r.seed):
        key = canonical_json(
            [r.method, r.dataset, r.dataset_fingerprint, r.hparams, r.code.get("hash", "")]
        )
        g = groups.setdefault(key, {"label": labels.get(key, r.method), "records": []})
        g["records"].append(r)
    out = list(groups.values())
    if patterns:
        order = {p: i for i, p in enumerate(patterns)}

        def rank(g: dict[str, Any]) -> int:
            name = g["records"][0].method
            return min((order[p] for p in patterns if fnmatch.fnmatch(name, p)), default=99)

        out.sort(key=rank)
    return datasets[0], out


def png(fig: Any) -> bytes:
    """A matplotlib figure as PNG bytes (closed afterwards)."""
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
