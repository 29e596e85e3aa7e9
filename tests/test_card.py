"""``bench card``: lenses per dataset, numbers equal to the run records, no training without
``--train``, bad input, escaping, and the page in a headless browser."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from conftest import tiny_settings

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def browser() -> str | None:
    return next((b for b in map(shutil.which, BROWSERS) if b), None)


def stored(results: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((results / "runs").glob("*.json"))}


@pytest.mark.parametrize(
    ("dataset", "posthoc", "lenses"),
    [
        (
            "waterbirds-synth",
            ("gradcam", "energy"),
            {"bias", "calibration", "longtail", "ood", "shift", "explain"},
        ),
        ("digits-ood", ("energy",), {"calibration", "ood"}),
        ("glyph-lt", (), {"calibration", "longtail"}),
    ],
)
def test_card_numbers_equal_the_run_records(
    cli, tmp_path: Path, dataset: str, posthoc: tuple[str, ...], lenses: set[str]
) -> None:
    """The card, made from the checkpoints alone (run records deleted), shows exactly the
    metrics of the separate ``bench run`` records of the same checkpoint: on
    waterbirds-synth every lens, the OoD split's AUROC (``energy`` on the checkpoint) and
    the covariate-shift split's accuracy / ECE included."""
    settings = tiny_settings(dataset)
    first = tmp_path / "first"
    for method in ("erm", *posthoc):  # post hoc on erm's checkpoint
        code, _, err = cli(
            "run", "--method", method, "--dataset", dataset, "--set", *settings,
            "--results", first, "--quiet",
        )  # fmt: skip
        assert code == 0, err
    records = stored(first)
    by_method = {r["method"]: r for r in records.values()}
    second = tmp_path / "second"
    shutil.copytree(first / "checkpoints", second / "checkpoints")
    out = tmp_path / "card"
    code, text, err = cli(
        "card", "--method", "erm", "--dataset", dataset, "--set", *settings,
        "--results", second, "--out", out, "--json",
    )  # fmt: skip
    assert code == 0, err
    card = json.loads(text)
    assert card == json.loads((out / "card.json").read_text())
    assert card["explainer"] == "gradcam" and card["detector"] == "energy"
    (erm,) = card["methods"]
    supported = {name for name, lens in erm["lenses"].items() if lens["values"]}
    assert supported == lenses
    roles = {"ood": "energy", "explain": "gradcam"}
    for name, lens in erm["lenses"].items():
        assert bool(lens["absent"]) != bool(lens["values"]), name
        for key, value in lens["values"].items():
            source = by_method[roles.get(name, "erm")]
            if " (own " in key:
                source = by_method["erm"]
            group = re.fullmatch(r"acc\[group (\d+), ([\d,]+) train\]", key)
            if group:  # the long-tail lens of a dataset with groups: per-group accuracy
                details = source["details"]["test"]["worst-group-accuracy"]
                assert value == details["per_group"][group[1]], key
                continue
            metric, _, split = key.partition("@")
            split = split.split(" ")[0] or "test"
            expected = source["metrics"][split][metric]
            same_nan = math.isnan(value) and math.isnan(expected)  # an empty shot group
            assert value == expected or same_nan, (name, key)
    # the card re-made the same records (same run ids) from the checkpoints
    assert set(stored(second)) == set(records)
    page = (out / "card.html").read_text()
    assert "gradcam" in page and "energy" in page
    assert ("not supported" in page) == (len(lenses) < len(erm["lenses"]))  # every lens: none
    assert (out / "reliability-erm.png").is_file()
    assert (out / "per-class.png").is_file() == (dataset == "glyph-lt")
    assert (out / "per-group.png").is_file() == (dataset == "waterbirds-synth")
    if dataset == "waterbirds-synth":
        values = erm["lenses"]
        assert {"auroc@ood", "fpr95@ood", "auroc@ood (own msp)"} <= set(values["ood"]["values"])
        assert {"acc@shift", "ece@shift", "worst_group@shift"} == set(values["shift"]["values"])
        # one row per training group, its size from the training split
        from benchmark.data import load_bundle
        from benchmark.dataset import DATASETS

        tiny = DATASETS.get(dataset).tiny  # what tiny_settings passes as dataset.* options
        groups = load_bundle(dataset, dict(tiny)).splits["train"].attrs["group"]
        counts = torch.bincount(groups).tolist()
        keys = list(values["longtail"]["values"])
        sizes = [int(re.search(r", ([\d,]+) train", k)[1].replace(",", "")) for k in keys]
        assert sorted(sizes) == sorted(c for c in counts if c)
        assert "2 classes" in values["longtail"]["source"]


def test_card_refuses_to_train_without_a_checkpoint(cli, tmp_path: Path) -> None:
    results = tmp_path / "empty"
    code, out, err = cli(
        "card", "--method", "erm", "--dataset", "digits-ood",
        "--set", *tiny_settings("digits-ood"), "--results", results,
    )  # fmt: skip
    assert code == 2 and out == ""
    assert "no trained checkpoint" in err and "bench run --method erm --dataset digits-ood" in err
    assert err.strip().count("\n") == 0
    assert not (results / "checkpoints").exists() or not any((results / "checkpoints").iterdir())


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--method", "ermm", "--dataset", "digits-ood"), "did you mean 'erm'"),
        (("--method", "erm", "--dataset", "digits-odd"), "did you mean 'digits-ood'"),
        (("--method", "erm", "--dataset", "digits-ood", "--explainer", "gradcm"), "'gradcam'"),
        (("--method", "erm", "--dataset", "digits-ood", "--set", "epochz=1"), "'epochs'"),
    ],
)
def test_card_bad_input_is_one_line(cli, tmp_path: Path, args: tuple, expected: str) -> None:
    code, out, err = cli("card", *args, "--results", tmp_path / "r")
    assert code == 2 and out == "", err
    assert expected in err and err.strip().count("\n") == 0


def test_card_page_escapes_every_text() -> None:
    from benchmark.cli.card import card_html

    record = {
        "dataset": "<img src=x data-pwned=1>",
        "seed": 0,
        "settings": {"note": "<script>alert(1)</script>"},
        "dataset_fingerprint": '"><b>x',
        "explainer": "gradcam",
        "detector": "energy",
        "methods": [{"method": "a&b", "lenses": {}}],
    }
    page = card_html(record, [("bias", "<i>metric</i>", ["<u>1</u>"])], [])
    assert "<script>alert" not in page and "<img src=x" not in page and "<u>" not in page
    assert "&lt;script&gt;" in page and "a&amp;b" in page
    assert "script-src" not in page and "default-src &#x27;none&#x27;" in page  # no script


@pytest.mark.skipif(browser() is None, reason="no headless Chromium/Chrome installed here")
def test_card_renders_in_a_headless_browser(cli, tmp_path: Path) -> None:
    settings = tiny_settings("waterbirds-synth")
    results = tmp_path / "results"
    code, _, err = cli(
        "run", "--method", "erm", "--dataset", "waterbirds-synth", "--set", *settings,
        "--results", results, "--quiet",
    )  # fmt: skip
    assert code == 0, err
    out = tmp_path / "card"
    code, _, err = cli(
        "card", "--method", "erm", "--dataset", "waterbirds-synth", "--set", *settings,
        "--results", results, "--out", out, "--json",
    )  # fmt: skip
    assert code == 0, err
    card = json.loads((out / "card.json").read_text())
    run = subprocess.run(
        [browser(), "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
         (out / "card.html").as_uri()],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    dom = run.stdout
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", dom, flags=re.S)
    cells = [re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", r, flags=re.S) for r in rows]
    table = {(c[0], c[1]): c[2] for c in cells[1:]}
    lenses = card["methods"][0]["lenses"]
    worst = lenses["bias"]["values"]["worst_group"]
    assert table[("bias", "worst_group ↑")] == f"{worst * 100:.2f}"
    auroc = lenses["ood"]["values"]["auroc@ood"]
    assert table[("OoD detection", "scored by")] == "energy on erm"
    assert table[("OoD detection", "auroc@ood ↑")] == f"{auroc * 100:.2f}"
    shift = lenses["shift"]["values"]["acc@shift"]
    assert table[("covariate shift", "acc@shift ↑")] == f"{shift * 100:.2f}"
    assert table[("long tail", "scored by")].startswith("erm: per-group test accuracy")
    assert table[("explanations", "scored by")] == "gradcam on erm"
    assert "miou ↑" in {k[1] for k in table}
    assert dom.count("<img ") == len(list(out.glob("*.png")))  # every panel is on the page


def test_report_shows_the_written_cards(tmp_path: Path) -> None:
    from benchmark.cli.report import card_sections

    folder = tmp_path / "cards" / "x"
    folder.mkdir(parents=True)
    lens = {"values": {"worst_group": 0.25}, "source": "erm", "run_ids": ["abc"], "absent": ""}
    absent = {"values": {}, "source": "", "run_ids": [], "absent": "x has no OoD split"}
    record = {
        "dataset": "x<b>",
        "seed": 0,
        "settings": {},
        "dataset_fingerprint": "f",
        "explainer": "gradcam",
        "detector": "energy",
        "methods": [{"method": "erm", "lenses": {"bias": lens, "ood": absent}}],
    }
    (folder / "card.json").write_text(json.dumps(record))
    (folder / "reliability-erm.png").write_bytes(b"\x89PNG")
    (tmp_path / "cards" / "broken").mkdir()
    (tmp_path / "cards" / "broken" / "card.json").write_text("{")
    broken, card = card_sections(str(tmp_path))  # sorted by folder: broken/, x/
    assert "unreadable card" in broken
    html = card
    assert "<td>25.00</td>" in html and "x has no OoD split" in html and "x&lt;b&gt;" in html
    assert 'src="data:image/png;base64,' in html


def test_missing_checkpoint_names_the_thread_counts_of_stored_runs(tmp_path: Path) -> None:
    """A checkpoint trained with another CPU thread count is not found (the count is part of
    its key): the error says so and which OMP_NUM_THREADS reuses it."""
    import torch

    from benchmark.cli.card import other_thread_counts

    runs = tmp_path / "runs"
    runs.mkdir()
    other = torch.get_num_threads() + 1
    env = {"device": "cpu", "torch": torch.__version__, "threads": other}
    rec = {"method": "erm", "dataset": "waterbirds-synth", "seed": 0, "env_key": env}
    (runs / "a.json").write_text(json.dumps(rec))
    (runs / "broken.json").write_text("{")
    hint = other_thread_counts(tmp_path, ("erm", "waterbirds-synth", 0))
    assert f"OMP_NUM_THREADS={other}" in hint and f"with {other} CPU thread" in hint
    assert other_thread_counts(tmp_path, ("erm", "waterbirds-synth", 1)) == ""
    assert other_thread_counts(tmp_path, ("gradcam", "waterbirds-synth", 0)) == ""
    assert other_thread_counts(tmp_path, None) == ""
