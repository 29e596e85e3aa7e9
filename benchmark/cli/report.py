"""``bench report``: a static HTML page of the leaderboards with plots."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "report",
        parents=[common],
        help="write an HTML page of the leaderboards",
        description="One static HTML page: sortable leaderboard tables, reliability diagrams, "
        "per-class accuracy vs frequency, Insertion/Deletion curves and saliency overlays "
        "where the run records (--results) carry them.",
        epilog="example: bench report --leaderboard results/leaderboard --results results "
        "--out report.html",
    )
    p.add_argument(
        "--leaderboard",
        nargs="+",
        default=["results/leaderboard"],
        help="leaderboard CSVs or folders of them (default: results/leaderboard)",
    )
    p.add_argument("--results", help="results folder with the rows' run records (for plots)")
    p.add_argument("--out", default="report.html", help="output file (default: report.html)")
    p.add_argument(
        "--studies",
        default="all",
        help="paper studies to add a section for, from the stored runs of --results (comma-"
        "separated names, 'all' (default) or 'none'); nothing is run",
    )
    p.add_argument("--data-root", help="root folder of real datasets (for the studies)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    import time

    from benchmark.cli.checks import output_file
    from benchmark.report import write_report

    output_file(args.out, "--out")
    t0 = time.perf_counter()
    sections: list[str] = []
    if args.studies != "none" and args.results:
        names = None if args.studies == "all" else args.studies.split(",")
        sections = study_sections(args.results, args.data_root, names)
    if args.results:
        sections += card_sections(args.results)
    path = write_report(args.out, args.leaderboard, args.results, sections)
    size = path.stat().st_size / 1024
    print(f"wrote {path} ({size:.0f} KiB, {time.perf_counter() - t0:.1f} s)")
    return 0


def study_sections(
    results: str, data_root: str | None, names: list[str] | None = None
) -> list[str]:
    """One HTML section per paper study: each claim's published and measured numbers and
    its verdict, judged from the stored runs of ``results`` (nothing runs)."""
    from benchmark.cli.studies import (
        DATA_MISSING,
        STUDIES,
        evaluate,
        load_studies,
        measured_text,
        published_text,
    )
    from benchmark.report import esc
    from benchmark.store import Store

    load_studies()
    store = Store(results)
    out = [
        '<section id="studies"><h2>paper studies</h2><p class="muted">claims of seed papers '
        "judged on the stored runs (bench reproduce STUDY runs what is missing)</p>"
    ]
    for name in names or STUDIES.names():
        study = STUDIES.get(name)
        result = evaluate(study, store, data_root=data_root, other_threads=True)
        seeds = tuple(study.seeds)
        part = [
            f'<section id="study-{esc(name)}"><h3>{esc(name)}</h3>',
            f'<p class="muted">{esc(study.paper)}; runs: {esc(", ".join(study.methods))} on '
            f"{esc(study.dataset)}, seeds {esc(' '.join(map(str, seeds)))}</p>",
        ]
        if result.data_missing:
            part.append(f"<p>data missing: {esc(result.data_missing)}</p>")
        if result.env_note:
            part.append(f'<p class="muted">{esc(result.env_note)}</p>')
        part.append('<table><thead><tr><th>claim</th><th>published</th><th>measured</th>'
                    "<th>verdict</th></tr></thead><tbody>")  # fmt: skip
        for c in result.claims:
            published = "<br>".join(esc(published_text(p)) for p in c.claim.published)
            measured = (
                ""
                if c.verdict == DATA_MISSING
                else "<br>".join(esc(measured_text(c.claim, m, seeds)) for m in c.measured)
            )
            verdict = esc(c.verdict + (f" ({c.why})" if c.why else ""))
            part.append(
                f'<tr><td class="text">{esc(c.claim.text())}</td><td class="text">'
                f'{published or esc(c.claim.note)}</td><td class="text">{measured}</td>'
                f'<td class="text verdict">{verdict}</td></tr>'
            )
        part.append("</tbody></table></section>")
        out.append("".join(part))
    out.append("</section>")
    return out


def card_sections(results: str) -> list[str]:
    """One section per robustness card written under ``RESULTS/cards/`` (``bench card``)."""
    from pathlib import Path

    from benchmark.cli.card import card_body, card_rows, read_card
    from benchmark.report import esc

    out = []
    for i, path in enumerate(sorted(Path(results, "cards").glob("*/card.json"))):
        try:
            record, figures = read_card(path.parent)
            body = card_body(record, card_rows(record["methods"]), figures)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            body = f'<p class="muted">{esc(path)}: unreadable card ({esc(exc)})</p>'
        out.append(f'<section id="card-{i}">{body}</section>')
    return out
