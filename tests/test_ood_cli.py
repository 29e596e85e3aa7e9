"""The OoD track end to end on tiny digits-ood: post-hoc detectors reuse the base's
checkpoint, every OoD split reports the five metrics, the score histograms reach the record,
and ``bench plot reliability`` / ``ood-scores`` draw PNGs (or say why not, one line)."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import tiny_settings

OOD_KEYS = ("auroc", "fpr95", "fpr95_ood_positive", "aupr_in", "aupr_out")


def set_args() -> list[str]:
    return [a for pair in tiny_settings("digits-ood") for a in ("--set", pair)]


def test_detectors_reuse_the_base_and_plots_draw(cli, results: Path) -> None:
    base = ["--dataset", "digits-ood", "--results", results, "--quiet", *set_args()]
    code, _, err = cli("run", "--method", "erm", *base)
    assert code == 0, err
    code, _, err = cli("run", "--method", "msp", "energy", "temperature-scaling", *base)
    assert code == 0, err
    assert (results / "checkpoints").is_dir()
    assert len(list((results / "checkpoints").glob("*.pt"))) == 1  # the base's, trained once
    for path in (results / "runs").glob("*.json"):
        record = json.loads(path.read_text())
        for split in ("ood_near", "ood_far"):
            assert set(OOD_KEYS) <= set(record["metrics"][split])
            hist = record["details"][split]["ood"]["histogram"]
            assert len(hist["edges"]) == len(hist["id"]) + 1 == len(hist["ood"]) + 1
            assert sum(hist["id"]) == record["details"][split]["ood"]["n_id"]
        assert "ece" in record["metrics"]["test"]
    rel, scores = results / "rel.png", results / "scores.png"
    code, _, err = cli("plot", "reliability", "--results", results, "--out", rel)
    assert code == 0, err
    code, _, err = cli("plot", "ood-scores", "--results", results, "--method", "msp,energy",
                         "--out", scores)  # fmt: skip
    assert code == 0, err
    for png in (rel, scores):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, _, err = cli("plot", "ood-scores", "--results", results, "--method", "gram")
    assert code == 2 and "gram" in err and len(err.strip().splitlines()) == 1


def test_detector_knob_out_of_range_is_refused(cli, results: Path) -> None:
    code, _, err = cli("run", "--method", "knn", "--dataset", "digits-ood", "--results",
                       results, "--set", "k=0", *set_args())  # fmt: skip
    assert code == 2 and "k" in err and not (results / "checkpoints").exists()


def test_perf_ood_times_cpu_seconds_and_agrees_with_the_reference(cli) -> None:
    """``bench perf ood`` at a tiny scale: gram and mahalanobis agree with the reference-style
    loops to 1e-6, and on the CPU the clock is this process's CPU time."""
    import json

    args = ["--case", "resnet18", "--n-train", "4", "--n-val", "2", "--n-test", "4"]
    code, out, err = cli("perf", "ood", *args, "--powers", "2", "--batch-size", "4", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["environment"]["clock"] == "cpu"
    rows = {r["detector"]: r for r in report["rows"]}
    assert set(rows) == {"gram", "mahalanobis"}
    assert rows["gram"]["max_rel_diff"] < 1e-6 and rows["mahalanobis"]["max_rel_diff"] < 1e-6
    assert rows["gram"]["speedup"] > 0 and rows["gram"]["forward_s"] > 0


def test_perf_ood_extrapolates_a_reference_run_on_a_fraction(cli) -> None:
    """``--reference-fraction``: the reference runs on the first half of each split, its time
    is scaled by the image counts and flagged; the scores are compared on those images."""
    import json

    args = ["--case", "resnet18", "--n-train", "4", "--n-val", "2", "--n-test", "4", "--quiet"]
    code, out, err = cli("perf", "ood", *args, "--powers", "2", "--batch-size", "2", "--json",
                         "--reference-fraction", "0.5")  # fmt: skip
    assert code == 0, err
    row = {r["detector"]: r for r in json.loads(out)["rows"]}["gram"]
    assert row["reference_extrapolated"] and row["reference_scale"] == 2.0
    assert row["reference_s"] == 2.0 * row["reference_measured_s"]
    assert row["max_rel_diff"] < 1e-6 and row["path"] in ("C kernel", "torch")
    code, _, err = cli("perf", "ood", *args, "--reference-fraction", "0")
    assert code == 2 and "reference-fraction" in err
