"""``bench card``: every robustness lens of trained models on one dataset, on one page.

For each method, one cached checkpoint (``--seed``, ``--set``) is scored through every lens
the dataset supports:

- **bias** (datasets with groups / aligned / confounder attributes): worst-group and
  mean-group accuracy, aligned / conflicting accuracy, dcor² of the features vs the bias;
- **long tail** (long-tailed datasets): Many / Medium / Few, per-class accuracy vs training
  frequency; on a dataset that is not long-tailed but has groups (``waterbirds-synth``: two
  classes, so no Many / Medium / Few), the tail is the small groups: per-group test accuracy
  beside the group's training images (``acc[group G, N train]``, from the worst-group
  metric's per-group details), and a panel of it;
- **calibration** (every classifier): ECE, adaptive ECE, MCE, reliability diagram;
- **OoD** (datasets with OoD splits): AUROC and FPR@95TPR per OoD split of a post-hoc
  detector on the checkpoint (``--detector``, default ``energy``), and of the method's own
  score when it gives one;
- **covariate shift** (datasets with labelled evaluation splits besides ``test`` that are not
  OoD splits, e.g. ``waterbirds-synth``'s ``shift``): accuracy, ECE and worst-group accuracy
  on each, under the record's keys ``acc@shift``, ``ece@shift``, ``worst_group@shift``;
- **explanations** (datasets with object masks): mIoU, Insertion, Deletion of a post-hoc
  explainer on the checkpoint (``--explainer``, default ``gradcam``).

Every number is a metric of an ordinary run record (``Runner.run``: the method itself, then
``--set base=METHOD`` for the explainer and the detector), so the card equals the separate
``bench run`` records of the same checkpoint, and the records it makes are stored like any
other. Without ``--train`` a method whose checkpoint is not in the results folder is refused
before anything trains.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark.cli.checks import seed_arg

#: lens -> the record keys it shows (in this order), read from the test split
LENS_KEYS: dict[str, tuple[str, ...]] = {
    "calibration": ("acc", "bacc", "ece", "adaptive_ece", "mce"),
    "bias": ("worst_group", "mean_group", "aligned", "conflicting", "dcor2"),
    "longtail": ("many", "medium", "few"),
    "ood": ("auroc", "fpr95"),
    "shift": ("acc", "ece", "worst_group"),
    "explain": ("miou", "insertion", "deletion"),
}
LENS_TITLES = {
    "calibration": "accuracy, calibration",
    "bias": "bias",
    "longtail": "long tail",
    "ood": "OoD detection",
    "shift": "covariate shift",
    "explain": "explanations",
}
#: the worst-group metric's details key (per-group accuracy and counts of a split)
GROUP_DETAILS = "worst-group-accuracy"

EPILOG = """examples:
  bench card --method erm,group-upweight --dataset waterbirds-synth
  bench card --method erm --dataset digits-ood --detector energy
  bench card --method erm --dataset objects-masks --explainer cam --out card-objects/

The card scores trained checkpoints; it trains nothing unless --train is given. Its numbers
are those of the run records it reads or makes (bench show RUN_ID).
"""


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "card",
        parents=[common],
        help="one page of every robustness lens of trained models on a dataset",
        description="Score one trained checkpoint per method through every lens the dataset "
        "supports (bias, long tail, calibration, OoD, explanations), side by side; write an "
        "HTML page, PNG panels and a JSON record.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--method", required=True, nargs="+", help="'erm,groupdro' or 'erm groupdro'")
    p.add_argument("--dataset", required=True, help="dataset name (bench list datasets)")
    p.add_argument("--seed", type=seed_arg, default=0, help="the checkpoint's seed (default 0)")
    p.add_argument(
        "--set",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="the settings the checkpoints were trained with (as for bench run)",
    )
    p.add_argument(
        "--explainer",
        default="gradcam",
        help="post-hoc explainer (default gradcam; 'none' skips the explanation lens)",
    )
    p.add_argument(
        "--detector",
        default="energy",
        help="post-hoc OoD detector (default energy; 'none' skips the OoD lens)",
    )
    p.add_argument("--train", action="store_true", help="train a checkpoint that is missing")
    p.add_argument("--out", help="output folder (default RESULTS/cards/<dataset>-<methods>)")
    p.add_argument("--results", help="results folder (else $BENCH_RESULTS, else ./results)")
    p.add_argument("--data-root", help="root folder of real datasets (else $BENCH_DATA)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    p.add_argument("--json", action="store_true", help="print the card's JSON record")
    p.set_defaults(func=main)


# -- scoring ------------------------------------------------------------------------------------
@dataclass
class Lens:
    """One lens of one method: values (record keys -> fractions), or why it is absent."""

    name: str
    values: dict[str, float] = field(default_factory=dict)
    source: str = ""  # "erm", "gradcam on erm", ...
    run_ids: list[str] = field(default_factory=list)
    absent: str = ""  # not supported by the dataset / not applicable to the method


@dataclass
class MethodCard:
    method: str
    run_id: str
    checkpoint: str
    lenses: dict[str, Lens]
    records: dict[str, Any] = field(default_factory=dict)  # role -> RunRecord


class _Guarded:
    """Wraps a ``Store``: the first checkpoint a run asks for (the trained model itself, or
    a post-hoc method's base) must be stored, unless training is allowed."""

    def __init__(self, store: Any, allow_train: bool) -> None:
        self._store = store
        self.allow_train = allow_train
        self.pending = ""  # the command to suggest while the first checkpoint is awaited
        self.wanted: tuple[str, str, int] | None = None  # (method, dataset, seed) of `pending`

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def load_checkpoint(self, key: str) -> Any:
        from benchmark.errors import BenchError

        got = self._store.load_checkpoint(key)
        if got is None and self.pending and not self.allow_train:
            raise BenchError(
                f"no trained checkpoint here for {self.pending} (results folder "
                f"{self._store.root}); train it first with that command, or pass --train"
                + other_thread_counts(Path(self._store.root), self.wanted)
            )
        self.pending = ""
        return got


def other_thread_counts(root: Path, wanted: tuple[str, str, int] | None) -> str:
    """A hint for a missing checkpoint: the CPU thread counts of stored runs of the same
    (method, dataset, seed) under this torch and device (the thread count is part of the
    checkpoint key, ``benchmark.device.environment_key``), or "" when there are none."""
    if wanted is None:
        return ""
    import torch

    method, dataset, seed = wanted
    counts: set[int] = set()
    for path in (root / "runs").glob("*.json"):
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        env = rec.get("env_key") or {}
        if (
            (rec.get("method"), rec.get("dataset"), rec.get("seed")) == (method, dataset, seed)
            and env.get("device") == "cpu"
            and env.get("torch") == torch.__version__
            and isinstance(env.get("threads"), int)
            and env["threads"] != torch.get_num_threads()
        ):
            counts.add(env["threads"])
    if not counts:
        return ""
    shown = " or ".join(str(n) for n in sorted(counts))
    return (
        f"; runs of it exist with {shown} CPU thread(s), this process uses "
        f"{torch.get_num_threads()} (the thread count is part of the checkpoint key): "
        f"set OMP_NUM_THREADS={min(counts)} to reuse them"
    )


def tracks_of(dataset: str) -> set[str]:
    from benchmark.dataset import DATASETS, provided_tracks

    dcls = DATASETS.get(dataset)
    return provided_tracks(dcls.track, dcls.attrs)


def score_methods(
    methods: Sequence[str],
    dataset: str,
    seed: int,
    settings: Mapping[str, Any],
    store: Any,
    *,
    explainer: str = "gradcam",
    detector: str = "energy",
    allow_train: bool = False,
    data_root: str | None = None,
    device: str = "auto",
) -> tuple[list[MethodCard], Any]:
    """Each method's lenses on ``dataset``, from run records of ``store`` (made now when
    missing, from the stored checkpoints). Returns the cards and the dataset bundle."""
    from benchmark.device import select_device
    from benchmark.errors import BenchError
    from benchmark.method import METHODS
    from benchmark.runner import Runner
    from benchmark.sweep import reproduce_command

    guarded = _Guarded(store, allow_train)
    runner = Runner(guarded, select_device(device), data_root, progress=False)
    for name in (explainer, detector):
        if name != "none":
            METHODS.get(name)  # unknown names fail before anything runs
    for m in methods:
        runner.plan(m, dataset, seed, dict(settings))  # names, settings, compatibility
    tracks = tracks_of(dataset)
    cards = []
    bundle = None
    for m in methods:
        planned = runner.plan(m, dataset, seed, dict(settings))
        bundle = planned.bundle
        guarded.pending = reproduce_command(m, dataset, [seed], settings)
        guarded.wanted = (m, dataset, seed)
        record, _ = runner.run(m, dataset, seed, dict(settings))
        guarded.pending = ""
        card = MethodCard(m, record.run_id, record.checkpoint, {}, {"method": record})
        test = record.metrics.get("test", {})
        ood_splits = [
            s for s in bundle.eval_splits if bundle.splits[s].pair_with and s in bundle.splits
        ]
        shift_splits = [s for s in bundle.eval_splits if s != "test" and s not in ood_splits]

        def from_record(lens: str, rec: Any, source: str) -> Lens:
            vals = {k: rec.metrics["test"][k] for k in LENS_KEYS[lens] if k in rec.metrics["test"]}
            return Lens(lens, vals, source, [rec.run_id])

        # bias
        if "bias" in tracks:
            card.lenses["bias"] = from_record("bias", record, m)
        else:
            card.lenses["bias"] = Lens("bias", absent=f"{dataset} has no bias attributes")
        # long tail
        if "many" in test or "few" in test or "longtail" in tracks:
            card.lenses["longtail"] = from_record("longtail", record, m)
        elif GROUP_DETAILS in record.details.get("test", {}) and "group" in (
            bundle.splits["train"].attrs
        ):
            card.lenses["longtail"] = group_tail(record, bundle, m)
        else:
            card.lenses["longtail"] = Lens(
                "longtail", absent=f"{dataset} is not a long-tailed dataset"
            )
        # calibration
        if any(k in test for k in LENS_KEYS["calibration"]):
            card.lenses["calibration"] = from_record("calibration", record, m)
        else:
            card.lenses["calibration"] = Lens("calibration", absent=f"{m} gives no probabilities")
        # OoD: the detector on this checkpoint, plus the method's own score when it has one
        if ood_splits:
            lens = Lens("ood")
            post = (
                "skipped (--detector none)"
                if detector == "none"
                else _posthoc(runner, guarded, detector, m, dataset, seed, settings)
            )
            if isinstance(post, str):
                lens.absent = post
            else:
                card.records["detector"] = post
                lens.source = f"{detector} on {m}"
                lens.run_ids.append(post.run_id)
                for split in ood_splits:
                    for k in LENS_KEYS["ood"]:
                        if k in post.metrics.get(split, {}):
                            lens.values[f"{k}@{split}"] = post.metrics[split][k]
            own = record.conventions.get("ood_score")
            for split in ood_splits:
                for k in LENS_KEYS["ood"]:
                    if own and k in record.metrics.get(split, {}) and m != detector:
                        lens.values[f"{k}@{split} (own {own})"] = record.metrics[split][k]
            if lens.values:
                lens.absent = ""
            card.lenses["ood"] = lens
        else:
            card.lenses["ood"] = Lens("ood", absent=f"{dataset} has no OoD split")
        # covariate shift: the method's own record on the labelled non-test splits
        if shift_splits:
            lens = Lens("shift", source=m, run_ids=[record.run_id])
            for split in shift_splits:
                for k in LENS_KEYS["shift"]:
                    if k in record.metrics.get(split, {}):
                        lens.values[f"{k}@{split}"] = record.metrics[split][k]
            if not lens.values:
                lens.absent = f"{m} has no accuracy on {', '.join(shift_splits)}"
            card.lenses["shift"] = lens
        else:
            card.lenses["shift"] = Lens("shift", absent=f"{dataset} has no covariate-shift split")
        # explanations: the explainer on this checkpoint (or the method's own maps)
        if "explain" in tracks:
            if any(k in test for k in LENS_KEYS["explain"]):
                card.lenses["explain"] = from_record("explain", record, f"{m} (its own maps)")
            else:
                post = (
                    "skipped (--explainer none)"
                    if explainer == "none"
                    else _posthoc(runner, guarded, explainer, m, dataset, seed, settings)
                )
                if isinstance(post, str):
                    card.lenses["explain"] = Lens("explain", absent=post)
                else:
                    card.records["explainer"] = post
                    card.lenses["explain"] = from_record("explain", post, f"{explainer} on {m}")
        else:
            card.lenses["explain"] = Lens("explain", absent=f"{dataset} has no object masks")
        cards.append(card)
    if bundle is None:
        raise BenchError("no method to score")
    return cards, bundle


def train_group_counts(bundle: Any) -> dict[int, int]:
    """Training images per group id (the ``group`` attribute of the train split)."""
    import torch

    groups = bundle.splits["train"].attrs["group"]
    counts = torch.bincount(torch.as_tensor(groups).long().flatten())
    return {g: int(n) for g, n in enumerate(counts.tolist()) if n}


def group_tail(record: Any, bundle: Any, method: str) -> Lens:
    """The long-tail lens of a dataset with groups but no long tail of classes: each
    group's test accuracy (the worst-group metric's details) beside its training images,
    rarest group first. The lens's source names the class frequencies."""
    # keys are ints in a record made now, strings in one read back from its JSON file
    per_group = {str(g): v for g, v in record.details["test"][GROUP_DETAILS]["per_group"].items()}
    counts = train_group_counts(bundle)
    classes = bundle.class_counts("train").tolist()
    lens = Lens("longtail", run_ids=[record.run_id])
    lens.source = (
        f"{method}: per-group test accuracy vs the group's training images ("
        f"{len(classes)} classes, {' / '.join(f'{c:,}' for c in classes)} training images"
        + (": no Many / Medium / Few)" if len(classes) < 3 else ")")
    )
    for g in sorted(counts, key=lambda g: (counts[g], g)):
        if str(g) in per_group:
            lens.values[f"acc[group {g}, {counts[g]:,} train]"] = per_group[str(g)]
    return lens


def _posthoc(
    runner: Any,
    guarded: _Guarded,
    posthoc: str,
    base: str,
    dataset: str,
    seed: int,
    settings: Mapping[str, Any],
) -> Any:
    """The record of ``posthoc --set base=BASE`` on the same checkpoint, or why it cannot
    run (a post-hoc method on another post-hoc method, a base without features, ...)."""
    from benchmark.errors import BenchError
    from benchmark.method import METHODS

    mcls = METHODS.get(posthoc)
    if mcls.base is None:
        return f"{posthoc} is not a post-hoc method (it trains its own model)"
    chosen = {**settings, "base": base} if base != mcls.base else dict(settings)
    try:
        METHODS.get(posthoc).for_settings(chosen)
        runner.plan(posthoc, dataset, seed, chosen)
    except BenchError as exc:
        return f"{posthoc} cannot run on {base}: {exc}"
    from benchmark.sweep import reproduce_command

    guarded.pending = reproduce_command(base, dataset, [seed], settings)  # its base's checkpoint
    guarded.wanted = (base, dataset, seed)
    record, _ = runner.run(posthoc, dataset, seed, chosen)
    guarded.pending = ""
    return record


# -- page ---------------------------------------------------------------------------------------
def _fmt(key: str, value: float) -> str:
    from benchmark.tables import _scale

    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    k = _scale(key.split("@")[0].split(" ")[0])
    return f"{value * k:.2f}" if k != 1.0 else f"{value:.3f}"


def _base(key: str) -> str:
    """The metric of a card key: ``auroc@ood (own msp)`` -> ``auroc``."""
    return key.split("@")[0].split(" ")[0]


def _arrow(key: str) -> str:
    from benchmark.tables import arrow

    return arrow(key.split("@")[0].split(" ")[0])


def card_rows(methods: Sequence[Mapping[str, Any]]) -> list[tuple[str, str, list[str]]]:
    """(lens title, metric label, one cell per method) for the side-by-side table, from the
    card record's ``methods``; a lens no method has is one row saying why."""
    rows: list[tuple[str, str, list[str]]] = []
    for lens in LENS_KEYS:
        got = [m["lenses"].get(lens, {"values": {}, "source": "", "absent": ""}) for m in methods]
        keys: list[str] = []
        for g in got:
            keys += [k for k in g["values"] if k not in keys]
        order = LENS_KEYS[lens]  # the lens's order, also for a card.json read back (sorted)
        keys.sort(key=lambda k: order.index(_base(k)) if _base(k) in order else len(order))
        if not keys:
            whys = [g["absent"] for g in got]
            dataset_lacks = all(" has no " in w or " is not a " in w for w in whys)
            label = "not supported" if dataset_lacks else "not scored"
            rows.append((LENS_TITLES[lens], label, whys))
            continue
        rows.append((LENS_TITLES[lens], "scored by", [g["source"] or g["absent"] for g in got]))
        for k in keys:
            cells = [_fmt(k, g["values"][k]) if k in g["values"] else "—" for g in got]
            rows.append((LENS_TITLES[lens], k + _arrow(k), cells))
    return rows


def panels(cards: Sequence[MethodCard], dataset: str) -> list[tuple[str, str, str]]:
    """(file name, caption, PNG data URI) of the card's plots."""
    from benchmark.report import plot_curves, plot_per_class, plot_reliability

    out = []
    main = {c.method: [c.records["method"]] for c in cards}
    png = plot_per_class(dataset, main)
    if png:
        out.append(("per-class.png", "per-class test accuracy vs training images", png))
    png = plot_per_group(dataset, cards)
    if png:
        out.append(("per-group.png", "per-group test accuracy vs training images", png))
    for label, png in plot_reliability(dataset, main):
        out.append((f"reliability-{label}.png", f"reliability diagram of {label}", png))
    explained = {f"{c.method}": [c.records["explainer"]] for c in cards if "explainer" in c.records}
    png = plot_curves(dataset, explained) if explained else None
    if png:
        out.append(("insertion-deletion.png", "Insertion / Deletion curves", png))
    return out


def plot_per_group(dataset: str, cards: Sequence[MethodCard]) -> str | None:
    """Per-group test accuracy vs the group's training images (log), one series per
    method, from the long-tail lens of :func:`group_tail`; None when no card has it."""
    import re

    from benchmark.report import _new_figure, accuracy_vs_frequency_png

    fig = ax = None
    for card in cards:
        lens = card.lenses.get("longtail")
        points = []
        for key, value in lens.values.items() if lens else ():
            hit = re.fullmatch(r"acc\[group (\d+), ([\d,]+) train\]", key)
            if hit:
                points.append((int(hit[1]), int(hit[2].replace(",", "")), value))
        if not points:
            continue
        if fig is None:
            fig, ax = _new_figure(
                f"{dataset}: per-group accuracy vs training frequency",
                "training images of the group (log)",
                "test accuracy of the group",
            )
        ax.plot([p[1] for p in points], [p[2] for p in points], "o-", ms=5, label=card.method)
        for g, n, acc in points:
            ax.annotate(f"g{g}", (n, acc), textcoords="offset points", xytext=(4, 4), fontsize=7)
    return accuracy_vs_frequency_png(fig, ax)


def card_json(
    cards: Sequence[MethodCard],
    dataset: str,
    bundle: Any,
    seed: int,
    settings: Mapping[str, Any],
    explainer: str,
    detector: str,
) -> dict[str, Any]:
    return {
        "card_schema": 1,
        "dataset": dataset,
        "dataset_fingerprint": bundle.fingerprint,
        "dataset_version": bundle.version,
        "seed": seed,
        "settings": dict(settings),
        "explainer": explainer,
        "detector": detector,
        "methods": [
            {
                "method": c.method,
                "run_id": c.run_id,
                "checkpoint": c.checkpoint,
                "lenses": {
                    name: {
                        "values": lens.values,
                        "source": lens.source,
                        "run_ids": lens.run_ids,
                        "absent": lens.absent,
                    }
                    for name, lens in c.lenses.items()
                },
            }
            for c in cards
        ],
    }


def card_body(record: Mapping[str, Any], rows: Sequence[Any], figures: Sequence[Any]) -> str:
    """The card's HTML fragment (heading level ``h2``): what was scored, the side-by-side
    table and the panels (images as data URIs); every text escaped. ``bench report`` shows
    the same fragment."""
    from benchmark.report import esc

    methods = [m["method"] for m in record["methods"]]
    settings = " ".join(f"{k}={v}" for k, v in sorted(record["settings"].items())) or "defaults"
    body = [
        f"<h2>{esc(card_title(record))}</h2>",
        f'<p class="muted">seed {esc(record["seed"])} · settings {esc(settings)} · dataset '
        f"fingerprint {esc(record['dataset_fingerprint'])} · explainer "
        f"<b>{esc(record['explainer'])}</b> · OoD detector <b>{esc(record['detector'])}</b> "
        "(post hoc, on each method's checkpoint) · values in % (dcor² raw)</p>",
        '<table class="card"><thead><tr><th>lens</th><th class="text">metric</th>',
        *(f'<th class="method">{esc(m)}</th>' for m in methods),
        "</tr></thead><tbody>",
    ]
    for lens, label, cells in rows:
        wordy = label in ("not supported", "not scored", "scored by")  # text, not numbers
        cls = ' class="absent"' if label in ("not supported", "not scored") else ""
        td = '<td class="note">' if wordy else "<td>"
        body.append(
            f'<tr{cls}><td class="text">{esc(lens)}</td><td class="text">{esc(label)}</td>'
            + "".join(f"{td}{esc(c)}</td>" for c in cells)
            + "</tr>"
        )
    body.append("</tbody></table>")
    runs = [
        f"{m['method']}: "
        + " ".join(sorted({i for v in m["lenses"].values() for i in v["run_ids"]}))
        for m in record["methods"]
    ]
    body.append(f'<p class="muted">run records: {esc("; ".join(runs))}</p>')
    for name, caption, png in figures:
        body.append(
            f'<figure><img src="{esc(png)}" alt="{esc(caption)}" data-file="{esc(name)}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>"
        )
    return "\n".join(body)


def card_title(record: Mapping[str, Any]) -> str:
    methods = ", ".join(m["method"] for m in record["methods"])
    return f"robustness card: {methods} on {record['dataset']}"


def card_html(record: Mapping[str, Any], rows: Sequence[Any], figures: Sequence[Any]) -> str:
    """The card page: :func:`card_body` in a static page with no script (its Content
    Security Policy allows none)."""
    from benchmark.report import STYLE, esc

    csp = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{esc(csp)}">'
        f"<title>{esc(card_title(record))}</title><style>{STYLE} tr.absent td "
        "{ color: #888; } td.note { text-align: left; max-width: 24em; font-size: 12px; "
        "color: #555; } th.method { min-width: 8em; } th.text { text-align: left; }"
        "</style></head>\n<body>\n" + card_body(record, rows, figures) + "\n</body></html>\n"
    )


def read_card(folder: Path) -> tuple[dict[str, Any], list[tuple[str, str, str]]]:
    """A written card (``card.json`` and its PNG panels) read back, for ``bench report``."""
    import base64

    record = json.loads((folder / "card.json").read_text())
    figures = [
        (p.name, p.stem, "data:image/png;base64," + base64.b64encode(p.read_bytes()).decode())
        for p in sorted(folder.glob("*.png"))
    ]
    return record, figures


def write_card(out: Path, record: Mapping[str, Any], rows: Sequence[Any], figures: Any) -> Path:
    import base64

    from benchmark.io import atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    for name, _, png in figures:
        (out / name).write_bytes(base64.b64decode(png.split(",", 1)[1]))
    atomic_write_text(out / "card.json", json.dumps(record, indent=1, sort_keys=True) + "\n")
    page = out / "card.html"
    atomic_write_text(page, card_html(record, rows, figures))
    return page


def text_table(record: Mapping[str, Any], rows: Sequence[Any]) -> str:
    from tabulate import tabulate

    methods = [m["method"] for m in record["methods"]]
    return tabulate(
        [(lens, label, *cells) for lens, label, cells in rows],
        headers=["lens", "metric", *methods],
        tablefmt="github",
        disable_numparse=True,
    )


def main(args: argparse.Namespace) -> int:
    from benchmark.cli.run import method_names
    from benchmark.hparams import parse_assignments
    from benchmark.store import Store

    methods = method_names(args.method)
    settings = parse_assignments(args.set)
    store = Store(args.results)
    cards, bundle = score_methods(
        methods,
        args.dataset,
        args.seed,
        settings,
        store,
        explainer=args.explainer,
        detector=args.detector,
        allow_train=args.train,
        data_root=args.data_root,
        device=args.device,
    )
    record = card_json(
        cards, args.dataset, bundle, args.seed, settings, args.explainer, args.detector
    )
    rows = card_rows(record["methods"])
    figures = panels(cards, args.dataset)
    out = (
        Path(args.out) if args.out else store.root / "cards" / f"{args.dataset}-{'-'.join(methods)}"
    )
    page = write_card(out, record, rows, figures)
    if args.json:
        print(json.dumps(record, indent=1, sort_keys=True))
    else:
        print(text_table(record, rows))
        print(f"wrote {page} (+ card.json, {len(figures)} PNG panel(s)) in {out}")
    return 0
