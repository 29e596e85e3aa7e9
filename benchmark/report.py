"""``bench report``: one static HTML page of the leaderboards, with the plots a reader wants.

Tables sort by clicking a header (a few lines of inline JavaScript, no CDN; ``#sort=ID:COL:asc``
in the URL sorts on load). Plots are drawn from the run records named by each row, where the
records carry the data:

- per-class accuracy vs training frequency — ``shot-accuracy`` details (``per_class_acc``,
  ``train_counts``);
- reliability diagram — any metric detail with per-bin ``confidence``, ``accuracy`` and
  ``count`` (a ``bins`` list of dicts, or parallel lists);
- Insertion / Deletion curves — any metric detail with ``insertion_curve`` / ``deletion_curve``;
- saliency overlays — stored predictions (``predictions/<run_id>.pt``) with ``saliency`` maps.

Every text that comes from a CSV, a record or a plugin is HTML-escaped; a Content Security
Policy lets only the page's own script run; the CSV download links are formula-neutralised.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import math
import urllib.parse
import warnings
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmark.errors import BenchError
from benchmark.io import atomic_write_text
from benchmark.leaderboard import Leaderboard, level, read_leaderboard, to_csv
from benchmark.record import RunRecord
from benchmark.store import Store

#: rows drawn in the plots of one leaderboard (the best by its first metric)
MAX_SERIES = 8

SCRIPT = """
function sortTable(table, col, desc) {
  const body = table.tBodies[0];
  const num = table.tHead.rows[0].cells[col].dataset.type === "num";
  const key = (row) => {
    const cell = row.cells[col];
    const raw = cell.dataset.value !== undefined ? cell.dataset.value : cell.textContent;
    return num ? (raw === "" ? NaN : parseFloat(raw)) : raw;
  };
  const rows = Array.from(body.rows);
  rows.sort((a, b) => {
    const x = key(a), y = key(b);
    if (num) {
      if (isNaN(x) || isNaN(y)) return isNaN(x) - isNaN(y);
      return desc ? y - x : x - y;
    }
    return desc ? y.localeCompare(x) : x.localeCompare(y);
  });
  rows.forEach((r) => body.appendChild(r));
  table.dataset.sorted = col + ":" + (desc ? "desc" : "asc");
}
document.querySelectorAll("table.sortable").forEach((table) => {
  Array.from(table.tHead.rows[0].cells).forEach((th, col) => {
    th.addEventListener("click", () => {
      sortTable(table, col, table.dataset.sorted === col + ":asc");
    });
  });
});
const wanted = location.hash.match(/^#sort=([A-Za-z0-9_-]+):(\\d+):(asc|desc)$/);
if (wanted && document.getElementById(wanted[1])) {
  sortTable(document.getElementById(wanted[1]), Number(wanted[2]), wanted[3] === "desc");
}
document.body.dataset.ready = "1";
"""

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: .5em 0 1em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: right; }
th { background: #f3f3f3; cursor: pointer; user-select: none; }
th:first-child, td:first-child, td.text { text-align: left; }
figure { display: inline-block; margin: .5em 1em .5em 0; vertical-align: top; }
figcaption { font-size: 12px; color: #555; max-width: 420px; }
pre { background: #f7f7f7; padding: .5em; overflow-x: auto; font-size: 12px; }
.muted { color: #666; font-size: 12px; }
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def figure_png(fig: Any) -> str:
    """A matplotlib figure as a base64 PNG data URI (no text of the page enters the image
    markup)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _new_figure(title: str, xlabel: str, ylabel: str) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return fig, ax


# -- finding plottable data in records ----------------------------------------------------------
def _walk(obj: Any) -> Iterable[Mapping[str, Any]]:
    if isinstance(obj, Mapping):
        yield obj
        for value in obj.values():
            yield from _walk(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from _walk(value)


def per_class(record: RunRecord) -> tuple[list[float], list[float]] | None:
    d = record.details.get("test", {}).get("shot-accuracy")
    if not d or "per_class_acc" not in d or "train_counts" not in d:
        return None
    return [float(c) for c in d["train_counts"]], [
        math.nan if a is None else float(a) for a in d["per_class_acc"]
    ]


def reliability(record: RunRecord) -> list[dict[str, float]] | None:
    """Per-bin ``confidence``, ``accuracy``, ``count`` (and ``lo``/``hi`` edges when given)
    from any calibration-like detail: a ``bins`` list of dicts, or parallel lists."""
    for d in _walk(record.details.get("test", {})):
        bins = d.get("bins")
        is_table = isinstance(bins, list) and bins and isinstance(bins[0], Mapping)
        if is_table and {"confidence", "accuracy"} <= set(bins[0]):
            return [{k: float(v) for k, v in b.items() if _is_num(v)} for b in bins]
        if isinstance(d.get("confidence"), list) and isinstance(d.get("accuracy"), list):
            count = d.get("count") or [1.0] * len(d["confidence"])
            return [
                {"confidence": float(c), "accuracy": float(a), "count": float(n)}
                for c, a, n in zip(d["confidence"], d["accuracy"], count)
            ]
    return None


def _is_num(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def curves(record: RunRecord) -> dict[str, list[float]]:
    """``insertion`` / ``deletion`` curves (and their x axis, ``fraction``, when given)."""
    out: dict[str, list[float]] = {}
    for d in _walk(record.details.get("test", {})):
        for name in ("insertion", "deletion"):
            curve = d.get(f"{name}_curve")
            if isinstance(curve, list) and curve and name not in out:
                out[name] = [float(v) for v in curve]
                fraction = d.get("fraction")
                if isinstance(fraction, list) and len(fraction) == len(curve):
                    out[f"{name}_x"] = [float(v) for v in fraction]
    return out


# -- plots --------------------------------------------------------------------------------------
def plot_per_class(dataset: str, series: Mapping[str, list[RunRecord]]) -> str | None:
    import numpy as np

    fig = ax = None
    for label, records in series.items():
        data = [per_class(r) for r in records]
        data = [d for d in data if d is not None]
        if not data:
            continue
        if fig is None:
            fig, ax = _new_figure(
                f"{dataset}: per-class accuracy vs training frequency",
                "training images of the class (log)",
                "test accuracy of the class",
            )
        counts = np.array(data[0][0])
        with warnings.catch_warnings():  # a class no seed scored stays NaN (not drawn)
            warnings.simplefilter("ignore", RuntimeWarning)
            accs = np.nanmean(np.array([d[1] for d in data], dtype=float), axis=0)
        ax.scatter(counts, accs, s=12, alpha=0.7, label=label)
    return accuracy_vs_frequency_png(fig, ax)


def accuracy_vs_frequency_png(fig: Any, ax: Any) -> str | None:
    """An accuracy (0–1) vs training-images plot finished (log x, legend) as a PNG data
    URI; None when nothing was drawn (``fig`` is None)."""
    if fig is None:
        return None
    ax.set_xscale("log")
    ax.set_ylim(-0.03, 1.03)
    ax.legend(fontsize=7, loc="lower right")
    return figure_png(fig)


def plot_reliability(dataset: str, series: Mapping[str, list[RunRecord]]) -> list[tuple[str, str]]:
    out = []
    for label, records in series.items():
        rel = next((r for r in map(reliability, records) if r is not None), None)
        if rel is None:
            continue
        bins = [b for b in rel if b.get("count", 1) > 0]  # empty bins are not drawn
        fig, ax = _new_figure(f"{dataset}: reliability, {label}", "confidence", "accuracy")
        if bins and "lo" in bins[0] and "hi" in bins[0]:
            x = [(b["lo"] + b["hi"]) / 2 for b in bins]
            width = [max(b["hi"] - b["lo"], 0.01) * 0.95 for b in bins]
        else:
            x = [b["confidence"] for b in bins]
            width = [0.9 / max(1, len(rel))] * len(bins)
        acc = [b["accuracy"] for b in bins]
        ax.bar(x, acc, width=width, alpha=0.7, edgecolor="k", label="accuracy")
        ax.plot([b["confidence"] for b in bins], acc, "r.", label="mean confidence")
        ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=7, loc="upper left")
        out.append((label, figure_png(fig)))
    return out


def plot_curves(dataset: str, series: Mapping[str, list[RunRecord]]) -> str | None:
    import numpy as np

    fig = ax = None
    for label, records in series.items():
        found = [curves(r) for r in records]
        for name, style in (("insertion", "-"), ("deletion", "--")):
            data = [c[name] for c in found if name in c]
            if not data:
                continue
            if fig is None:
                fig, ax = _new_figure(
                    f"{dataset}: Insertion (solid) / Deletion (dashed)",
                    "fraction of pixels inserted / deleted",
                    "class probability",
                )
            n = min(len(d) for d in data)
            mean = np.mean([d[:n] for d in data], axis=0)
            xs = next((c[f"{name}_x"] for c in found if f"{name}_x" in c), None)
            x = xs[:n] if xs and len(xs) >= n else np.linspace(0, 1, n)
            ax.plot(x, mean, style, label=f"{label} {name}")
    if fig is None:
        return None
    ax.legend(fontsize=7, loc="upper right")
    return figure_png(fig)


def plot_saliency(store: Store, record: RunRecord, n: int = 4) -> str | None:
    """Overlay of the first ``n`` test images and their saliency maps, from stored outputs."""
    if not store.has_predictions(record.run_id):
        return None
    try:
        outputs = store.load_predictions(record.run_id)
        sal = outputs.get("test").saliency if "test" in outputs else None
        if sal is None:
            return None
        from benchmark.data import load_bundle

        bundle = load_bundle(record.dataset, record.dataset_options)
        images = bundle.splits["test"].inputs[:n]
    except Exception:  # data not available here: the plot is simply absent
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = min(n, len(images))
    fig, axes = plt.subplots(1, k, figsize=(2 * k, 2.2))
    for i, ax in enumerate(list(axes) if k > 1 else [axes]):
        img = images[i].float()
        img = img / 255.0 if images.dtype.is_floating_point is False else img
        ax.imshow(img.permute(1, 2, 0).squeeze().numpy(), cmap="gray")
        ax.imshow(sal[i].float().numpy(), cmap="jet", alpha=0.45)
        ax.axis("off")
    return figure_png(fig)


# -- page ---------------------------------------------------------------------------------------
def table_html(board: Leaderboard, table_id: str) -> str:
    from benchmark.tables import _scale, arrow, fmt

    keys = board.metrics
    head = [
        "method", "selection", "n", "verification", *(k + arrow(k) for k in keys), "seeds",
        "source", "date",
    ]  # fmt: skip
    types = ["text", "text", "num", "text", *(["num"] * len(keys)), "text", "text", "text"]
    parts = [f'<table class="sortable" id="{esc(table_id)}"><thead><tr>']
    parts += [f'<th data-type="{t}">{esc(h)}</th>' for h, t in zip(head, types)]
    parts.append("</tr></thead><tbody>")
    for row in board.rows:
        cells = [
            f'<td class="text" title="{esc(row["hparams"])}">{esc(row["method"])}</td>',
            f'<td class="text">{esc(row["selection"])}</td>',
            f'<td data-value="{esc(row["n"])}">{esc(row["n"])}</td>',
            f'<td class="text">{esc(level(row))}</td>',
        ]
        for key in keys:
            mean, std = row.get(f"{key}_mean", ""), row.get(f"{key}_std", "")
            shown = (
                fmt(float(mean), float(std or "nan"), int(row["n"]), _scale(key)) if mean else "—"
            )
            cells.append(f'<td data-value="{esc(mean)}">{esc(shown)}</td>')
        cells += [
            f'<td class="text">{esc(row["seeds"])}</td>',
            f'<td class="text">{esc(row["source"])}{plugin_link(row)}</td>',
            f'<td class="text">{esc(row["date"])}</td>',
        ]
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</tbody></table>")
    return "".join(parts)


def plugin_link(row: Mapping[str, str]) -> str:
    """A link to the plugin source a row was made with (its ``--plugin`` file: a verified
    bundle's ``plugin/`` copy), where a cheating plugin shows; "" for built-in methods."""
    import re
    import shlex

    try:
        args = shlex.split(row.get("reproduce", ""))
    except ValueError:
        return ""
    files = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--plugin"]
    if not files or re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", files[0]):  # a path, never a URL
        return ""
    return f' (<a href="{esc(files[0])}">plugin source</a>)'


def build_report(
    leaderboards: Sequence[str | Path],
    results: str | Path | None = None,
    *,
    title: str = "bench leaderboards",
    sections: Sequence[str] = (),
) -> str:
    """The HTML page for the given leaderboard CSVs (folders are expanded to their CSVs),
    then ``sections``: HTML fragments made by the caller (``bench report``'s paper studies),
    whose text they must escape themselves."""
    files: list[Path] = []
    for item in leaderboards:
        path = Path(item)
        files += sorted(path.glob("*.csv")) if path.is_dir() else [path]
    if not files:
        raise BenchError(f"no leaderboard CSV in {', '.join(map(str, leaderboards))}")
    boards = [read_leaderboard(f) for f in files]
    store = Store(results) if results is not None else None
    records: dict[str, RunRecord] = {}
    if store is not None:
        records = {r.run_id: r for r in store.records()}
    body = [f"<h1>{esc(title)}</h1>"]
    body.append(
        f'<p class="muted">generated {esc(datetime.now(UTC).isoformat(timespec="seconds"))} '
        f"from {len(boards)} leaderboard CSV(s); click a column header to sort.</p>"
    )
    for i, board in enumerate(boards):
        datasets = sorted({r["dataset"] for r in board.rows}) or [board.path.stem]
        body.append(f'<section id="section-{i}"><h2>{esc(", ".join(datasets))}</h2>')
        fps = ", ".join(sorted(board.fingerprints())) or "—"
        body.append(
            f'<p class="muted">{esc(board.path.name)} · dataset fingerprint {esc(fps)} · '
            f"{len(board.rows)} row(s) · values in % (mean ± std over seeds, ddof 1)</p>"
        )
        body.append(table_html(board, f"t{i}"))
        csv_text = to_csv(board.rows, board.columns)
        href = "data:text/csv;charset=utf-8," + urllib.parse.quote(csv_text)
        body.append(
            f'<p><a download="{esc(board.path.name)}" href="{esc(href)}">download CSV</a></p>'
        )
        body.append("<details><summary>reproduce each row</summary><pre>")
        body.append("\n".join(esc(f"{r['method']}: {r['reproduce']}") for r in board.rows))
        body.append("</pre></details>")
        series: dict[str, list[RunRecord]] = {}
        for row in best_rows(board, MAX_SERIES):
            label = (
                f"{row['method']} ({row['row_hash'][:6]})" if _dupes(board, row) else row["method"]
            )
            found = [records[i] for i in row["run_ids"].split() if i in records]
            if found:
                series[label] = found
        figures = []
        if series and len(series) < len(board.rows):
            body.append(f'<p class="muted">{esc(plotted_note(board, len(series)))}</p>')
        if series:
            name = ", ".join(datasets)
            png = plot_per_class(name, series)
            if png:
                figures.append((png, "per-class test accuracy vs training images per class"))
            for label, png in plot_reliability(name, series):
                figures.append((png, f"reliability diagram of {label} (first seed)"))
            png = plot_curves(name, series)
            if png:
                figures.append((png, "Insertion / Deletion curves, mean over seeds"))
            for label, recs in series.items():
                png = plot_saliency(store, recs[0]) if store is not None else None
                if png:
                    figures.append((png, f"saliency of {label} on the first test images"))
        elif store is None:
            body.append('<p class="muted">plots need the run records: pass --results DIR</p>')
        for png, caption in figures:
            body.append(
                f'<figure><img src="{esc(png)}" alt="{esc(caption)}">'
                f"<figcaption>{esc(caption)}</figcaption></figure>"
            )
        body.append("</section>")
    body.extend(sections)
    digest = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
    csp = (
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{digest}'"
    )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{esc(csp)}">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head>\n<body>\n"
        + "\n".join(body)
        + f"\n<script>{SCRIPT}</script>\n</body></html>\n"
    )


def plotted_note(board: Leaderboard, shown: int) -> str:
    """What the plots of ``board`` cover when they draw ``shown`` of its rows: the best
    ``MAX_SERIES`` by its first metric at most, and only rows whose records are at hand."""
    text = f"plots show {shown} of the {len(board.rows)} rows"
    if len(board.rows) > MAX_SERIES:
        return text + (
            f" (at most the {MAX_SERIES} best by {board.metrics[0]}; "
            "a row is drawn when its run records are in --results)"
        )
    return text + " (a row is drawn when its run records are in --results)"


def best_rows(board: Leaderboard, k: int) -> list[dict[str, str]]:
    """The ``k`` best rows by the board's first metric (plots stay readable and fast)."""
    from benchmark.metric import direction

    keys = [m for m in board.metrics if direction(m.split("@")[0]) is not None]
    if not keys or len(board.rows) <= k:
        return board.rows[:k]
    key, higher = keys[0], direction(keys[0].split("@")[0])

    def score(row: Mapping[str, str]) -> float:
        text = row.get(f"{key}_mean", "")
        value = float(text) if text else math.nan
        return -math.inf if math.isnan(value) else (value if higher else -value)

    return sorted(board.rows, key=score, reverse=True)[:k]


def _dupes(board: Leaderboard, row: Mapping[str, str]) -> bool:
    return sum(r["method"] == row["method"] for r in board.rows) > 1


def write_report(
    out: str | Path,
    leaderboards: Sequence[str | Path],
    results: str | Path | None = None,
    sections: Sequence[str] = (),
) -> Path:
    out = Path(out)
    atomic_write_text(out, build_report(leaderboards, results, sections=sections))
    return out
