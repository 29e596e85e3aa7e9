"""Tables are pure functions of run records: aggregate with pandas, render with tabulate.

Runs are grouped by everything that determines a number except the seed (method, dataset,
fingerprint, hyperparameters, code); each group reports mean, standard deviation (ddof = 1)
and the number of seeds per metric.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd
from tabulate import tabulate

from benchmark.metric import direction
from benchmark.record import RunRecord, canonical_json

#: Column order of the headline metrics; others follow alphabetically.
PREFERRED = (
    "acc",
    "bacc",
    "many",
    "medium",
    "few",
    "worst_group",
    "aligned",
    "conflicting",
    "dcor2",
    "ece",
    "auroc",
    "fpr95",
    "miou",
    "insertion",
    "deletion",
    "id_score",
)


def records_frame(records: Iterable[RunRecord]) -> pd.DataFrame:
    """One row per (run, metric key)."""
    rows = []
    for r in records:
        group = canonical_json(
            [r.method, r.dataset, r.dataset_fingerprint, r.hparams, r.code.get("hash", "")]
        )
        for key, value in r.flat_metrics().items():
            rows.append(
                {
                    "dataset": r.dataset,
                    "method": r.method,
                    "group": group,
                    "hparams": r.hparams,
                    "code": r.code.get("hash", ""),
                    "seed": r.seed,
                    "run_id": r.run_id,
                    "metric": key,
                    "value": value,
                }
            )
    return pd.DataFrame(
        rows,
        columns=[
            "dataset",
            "method",
            "group",
            "hparams",
            "code",
            "seed",
            "run_id",
            "metric",
            "value",
        ],
    )


def _labels(frame: pd.DataFrame) -> dict[str, str]:
    """Row labels: the method name, plus the settings that distinguish its groups."""
    labels: dict[str, str] = {}
    for (_, method), sub in frame.groupby(["dataset", "method"], sort=False):
        groups = sub.drop_duplicates("group")
        hps = list(groups["hparams"])
        varying = sorted({k for h in hps for k in h if any(h.get(k) != o.get(k) for o in hps)})
        codes = groups["code"].nunique() > 1
        for _, row in groups.iterrows():
            parts = [f"{k}={row['hparams'].get(k)}" for k in varying]
            if codes:
                parts.append(f"code={row['code'][:7]}")
            labels[row["group"]] = f"{method} ({', '.join(parts)})" if parts else method
    return labels


def aggregate(records: Iterable[RunRecord]) -> pd.DataFrame:
    """Long table: dataset, method label, metric, mean, std (ddof 1), n seeds."""
    frame = records_frame(records)
    if frame.empty:
        return pd.DataFrame(columns=["dataset", "method", "metric", "mean", "std", "n", "seeds"])
    labels = _labels(frame)
    out = (
        frame.groupby(["dataset", "group", "metric"], sort=False)
        .agg(
            mean=("value", "mean"),
            std=("value", lambda v: v.std(ddof=1)),
            n=("value", "count"),
            seeds=("seed", lambda s: ",".join(str(x) for x in sorted(s))),
        )
        .reset_index()
    )
    out.insert(1, "method", out["group"].map(labels))
    return out.drop(columns="group")


def metric_order(keys: Iterable[str]) -> list[str]:
    keys = list(dict.fromkeys(keys))

    def rank(key: str) -> tuple[int, str]:
        base = key.split("@")[0]
        return (PREFERRED.index(base) if base in PREFERRED else len(PREFERRED), key)

    return sorted(keys, key=rank)


def arrow(key: str) -> str:
    d = direction(key.split("@")[0])
    return "" if d is None else (" ↑" if d else " ↓")


def fmt(mean: float, std: float, n: int, scale: float = 100.0, digits: int = 2) -> str:
    """``"45.02 ± 0.31"``; an undefined value (empty shot group) prints as "—"."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "—"
    text = f"{mean * scale:.{digits}f}"
    if n > 1 and not math.isnan(std):
        text += f" ± {std * scale:.{digits}f}"
    return text


def _scale(key: str) -> float:
    """Percent for accuracies and rates; raw for unbounded quantities."""
    return 1.0 if key.split("@")[0] in ("dcor2",) else 100.0


def wide(agg: pd.DataFrame, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per (dataset, method), one column per metric, cells "mean ± std"."""
    if agg.empty:
        return pd.DataFrame()
    keys = metric_order(metrics or agg["metric"].unique())
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for _, r in agg.iterrows():
        if r["metric"] not in keys:
            continue
        row = rows.setdefault(
            (r["dataset"], r["method"]), {"dataset": r["dataset"], "method": r["method"], "n": 0}
        )
        row[r["metric"] + arrow(r["metric"])] = fmt(
            r["mean"], r["std"], r["n"], _scale(r["metric"])
        )
        row["n"] = max(row["n"], int(r["n"]))
    columns = ["dataset", "method", *(k + arrow(k) for k in keys), "n"]
    return pd.DataFrame(list(rows.values())).reindex(columns=columns).fillna("")


def render(frame: pd.DataFrame, tablefmt: str = "github") -> str:
    if frame.empty:
        return "(no runs)"
    return tabulate(
        frame, headers="keys", tablefmt=tablefmt, showindex=False, disable_numparse=True
    )


def run_table(records: Sequence[RunRecord]) -> str:
    """The table ``bench run`` prints: one row per metric, mean ± std over the given seeds.

    One method on a dataset: columns metric, value, seeds. Several: one column per method
    (in the order of the records, i.e. of ``--method``), side by side, and the seeds in the
    title.
    """
    agg = aggregate(records)
    per_dataset = []
    for dataset, by_dataset in agg.groupby("dataset", sort=False):
        methods = list(dict.fromkeys(by_dataset["method"]))
        order = metric_order(by_dataset["metric"])
        cells = {
            (r["method"], r["metric"]): (
                fmt(r["mean"], r["std"], int(r["n"]), _scale(r["metric"])),
                int(r["n"]),
            )
            for _, r in by_dataset.iterrows()
        }
        if len(methods) == 1:
            rows = [
                {
                    "metric": m + arrow(m),
                    "value": cells[methods[0], m][0],
                    "seeds": cells[methods[0], m][1],
                }
                for m in order
            ]
            title = f"{methods[0]} on {dataset} (accuracies in %)"
        else:
            rows = [
                {
                    "metric": m + arrow(m),
                    **{meth: cells.get((meth, m), ("—", 0))[0] for meth in methods},
                }
                for m in order
            ]
            per_method = {
                m: max(n for (meth, _), (_, n) in cells.items() if meth == m) for m in methods
            }
            seeds = sorted(set(per_method.values()))
            title = (
                f"{', '.join(methods)} on {dataset} (accuracies in %; "
                f"seeds per method: {', '.join(map(str, seeds))})"
            )
        per_dataset.append(f"{title}\n" + render(pd.DataFrame(rows)))
    return "\n\n".join(per_dataset) if per_dataset else "(no runs)"
