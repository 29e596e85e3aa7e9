"""bench report: escaped text, neutralised CSV exports, plots from records, and the page in a
real headless browser (skipped where none is installed)."""

from __future__ import annotations

import re
import shutil
import subprocess
import urllib.parse
from pathlib import Path

import pytest

from benchmark.leaderboard import build_row, write_leaderboard
from benchmark.record import RunRecord, content_id
from benchmark.report import build_report
from benchmark.store import Store

EVIL = '<img src=x onerror="document.body.dataset.pwned=1">'


def record(seed: int, acc: float, method: str = "erm", lr: float = 0.1) -> RunRecord:
    fields = dict(
        method=method,
        dataset="glyph-lt",
        dataset_version="1",
        dataset_fingerprint="f00d",
        dataset_options={},
        hparams={"lr": lr},
        seed=seed,
    )
    code = {"hash": "c0de", "core": "c", "metrics": "m", "bench": "0.1.0"}
    run_id = content_id(RunRecord.identity(code="c0de", **fields))
    details = {
        "test": {
            "shot-accuracy": {
                "per_class_acc": [0.9, 0.5, None, 0.1],
                "train_counts": [200, 50, 9, 2],
            },
            "calibration": {  # the calibration metric's layout, an empty bin included
                "bins": [
                    {"lo": lo, "hi": lo + 0.5, "count": n, "accuracy": a, "confidence": c}
                    for lo, n, a, c in ((0.0, 10, 0.2, 0.3), (0.5, 0, 0.0, 0.0), (1.0, 5, 1.0, 1.0))
                ]
            },
            "insertion-deletion": {
                "fraction": [0.25, 0.5, 0.75, 1.0],
                "insertion_curve": [0.1, 0.5, 0.8, 0.9],
                "deletion_curve": [0.9, 0.4, 0.2, 0.1],
            },
        }
    }
    return RunRecord(
        run_id=run_id,
        track="longtail",
        code=code,
        metrics={"test": {"acc": acc, "few": 0.1}},
        details=details,
        created="2026-01-01T00:00:00+00:00",
        **fields,
    )  # type: ignore[arg-type]


@pytest.fixture
def page_inputs(tmp_path: Path) -> tuple[Path, Path]:
    store = Store(tmp_path / "results")
    groups = {("erm", 0.1): (0.50, 0.60), ("erm", 0.2): (0.90, 0.80), ("tde", 0.1): (0.70, 0.72)}
    rows = []
    for (method, lr), accs in groups.items():
        records = [record(s, a, method, lr) for s, a in enumerate(accs)]
        for r in records:
            store.write(r)
        rows.append(
            build_row(records, source=f"=HYPERLINK(1) {EVIL}" if method == "tde" else "runs")
        )
    rows[0]["selection"] = "<script>document.body.dataset.pwned=1</script>"
    from benchmark.leaderboard import row_hash

    rows[0]["row_hash"] = row_hash(rows[0])
    board = write_leaderboard(tmp_path / "lb" / "glyph-lt.csv", rows)
    return board.parent, store.root


def test_text_is_escaped_and_csv_export_neutralised(page_inputs: tuple[Path, Path]) -> None:
    board, results = page_inputs
    page = build_report([board], results)
    assert EVIL not in page and "<script>document" not in page
    assert html_escaped(EVIL) in page
    assert page.count("<script>") == 1  # only the page's own sorter
    href = re.search(r'href="data:text/csv;charset=utf-8,([^"]+)"', page).group(1)
    exported = urllib.parse.unquote(href.replace("&amp;", "&").replace("&#x27;", "'"))
    assert "'=HYPERLINK(1)" in exported and ",=HYPERLINK" not in exported
    assert "Content-Security-Policy" in page and "script-src &#x27;sha256-" in page


def html_escaped(text: str) -> str:
    import html

    return html.escape(text, quote=True)


def test_plots_from_record_details(page_inputs: tuple[Path, Path]) -> None:
    board, results = page_inputs
    page = build_report([board], results)
    for caption in (
        "per-class test accuracy vs training images per class",
        "reliability diagram of erm",
        "Insertion / Deletion curves, mean over seeds",
    ):
        assert caption in page
    assert page.count('<img src="data:image/png;base64,') >= 4
    from benchmark.report import curves, reliability

    r = record(0, 0.5)
    assert [b["count"] for b in reliability(r)] == [10.0, 0.0, 5.0]
    assert curves(r)["insertion_x"] == [0.25, 0.5, 0.75, 1.0]
    bare = build_report([board])  # no records: tables only, and it says why
    assert "plots need the run records" in bare and "data:image/png" not in bare


def test_cli_report_and_bad_csv(cli, page_inputs: tuple[Path, Path], tmp_path: Path) -> None:
    board, results = page_inputs
    out = tmp_path / "report.html"
    code, stdout, err = cli("report", "--leaderboard", board, "--results", results, "--out", out)
    assert code == 0, err
    assert out.is_file() and "wrote" in stdout
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.csv").write_text(board.joinpath("glyph-lt.csv").read_text().replace("0.55", "0.95"))
    code, _, err = cli("report", "--leaderboard", bad, "--out", tmp_path / "r2.html")
    assert code == 2 and "edited after it was written" in err
    assert not (tmp_path / "r2.html").exists()


BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def browser() -> str | None:
    return next((b for b in map(shutil.which, BROWSERS) if b), None)


@pytest.mark.skipif(browser() is None, reason="no headless Chromium/Chrome installed here")
def test_page_renders_and_sorts_in_a_headless_browser(
    page_inputs: tuple[Path, Path], tmp_path: Path
) -> None:
    board, results = page_inputs
    page = tmp_path / "report.html"
    page.write_text(build_report([board], results))
    acc_col = 4  # method, selection, n, verification, acc

    def dom(fragment: str) -> str:
        run = subprocess.run(
            [browser(), "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
             f"{page.as_uri()}{fragment}"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr[-2000:]
        return run.stdout

    def acc_order(html_text: str) -> list[str]:
        body = html_text.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
        rows = re.findall(r"<tr>(.*?)</tr>", body, flags=re.S)
        return [re.findall(r'data-value="([^"]*)"', r)[1] for r in rows]

    ascending = dom(f"#sort=t0:{acc_col}:asc")
    assert 'data-ready="1"' in ascending  # the page's script ran
    assert "data-pwned" not in ascending  # the injected markup did not
    values = [float(v) for v in acc_order(ascending)]
    assert values == sorted(values) and len(values) == 3
    descending = dom(f"#sort=t0:{acc_col}:desc")
    assert [float(v) for v in acc_order(descending)] == sorted(values, reverse=True)
    assert f'data-sorted="{acc_col}:desc"' in descending


def test_saliency_overlay_from_stored_predictions(tmp_path: Path) -> None:
    import torch

    from benchmark.data import load_bundle
    from benchmark.dataset import DATASETS
    from benchmark.outputs import Outputs
    from benchmark.report import plot_saliency

    options = dict(DATASETS.get("glyph-lt").tiny)
    bundle = load_bundle("glyph-lt", options)
    n, _, h, w = bundle.splits["test"].inputs.shape
    store = Store(tmp_path)
    r = record(0, 0.5)
    r.dataset_options = bundle.options
    assert plot_saliency(store, r) is None  # no stored predictions: no overlay
    store.save_predictions(r.run_id, {"test": Outputs(logits=torch.zeros(n, 6))})
    assert plot_saliency(store, r) is None  # predictions without saliency: no overlay
    sal = torch.rand(n, h, w)
    store.save_predictions(r.run_id, {"test": Outputs(logits=torch.zeros(n, 6), saliency=sal)})
    png = plot_saliency(store, r)
    assert png is not None and png.startswith("data:image/png;base64,")


def test_report_shows_levels_and_links_the_plugin_source(tmp_path: Path) -> None:
    records = [record(s, 0.5, "my-focal") for s in range(2)]
    verified = build_row(records, plugin="bundle/plugin/focal_loss.py", verification="reinferred")
    url = build_row(
        [record(s, 0.4, "x", lr=0.2) for s in range(2)],
        plugin="javascript:alert(1)",
        verification="predictions",
    )
    local = build_row([record(s, 0.3) for s in range(2)])
    board = write_leaderboard(tmp_path / "lb" / "glyph-lt.csv", [verified, url, local])
    page = build_report([board])
    assert '<th data-type="text">verification</th>' in page
    cells = re.findall(r'<td class="text">(local|predictions|reinferred|retrained)</td>', page)
    assert sorted(cells) == ["local", "predictions", "reinferred"]
    assert '<a href="bundle/plugin/focal_loss.py">plugin source</a>' in page
    assert 'href="javascript:' not in page
