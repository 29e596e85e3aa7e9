"""The explanation track's CLI: ``bench plot saliency``, ``bench plot insdel-curves`` and
``bench perf explain`` on tiny runs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import tiny_settings


def _png_size(path) -> tuple[int, int]:
    import matplotlib.image

    img = matplotlib.image.imread(path)
    return img.shape[1], img.shape[0]


def test_plots_of_explainers(cli, tmp_path) -> None:
    results = tmp_path / "results"
    code, out, err = cli(
        "run", "--method", "gradcam", "center-saliency", "--dataset", "objects-masks",
        "--set", *tiny_settings("objects-masks"), "--predictions", "--results", results,
        "--quiet",
    )  # fmt: skip
    assert code == 0, err
    png = tmp_path / "grid.png"
    code, out, err = cli(
        "plot", "saliency", "--results", results, "--images", "2", "--out", png,
        "--method", "center-saliency,gradcam",
    )  # fmt: skip
    assert code == 0, err
    assert "2 images × 2 explainers (center-saliency, gradcam)" in out
    width, height = _png_size(png)
    assert width > height > 100  # 2 rows, 3 columns
    curves = tmp_path / "curves.png"
    code, out, err = cli("plot", "insdel-curves", "--results", results, "--out", curves)
    assert code == 0, err
    assert "gradcam (n=1): protocol id: ins" in out and "protocol rise" in out
    assert curves.stat().st_size > 10_000


def test_saliency_plot_needs_stored_maps(cli, tmp_path) -> None:
    results = tmp_path / "results"
    code, _, err = cli(
        "run", "--method", "center-saliency", "--dataset", "objects-masks",
        "--set", *tiny_settings("objects-masks"), "--results", results, "--quiet",
    )  # fmt: skip
    assert code == 0, err
    code, _, err = cli("plot", "saliency", "--results", results)
    assert code == 2 and "--predictions" in err and len(err.strip().splitlines()) == 1


def test_perf_explain_maps_equal_the_references(cli) -> None:
    code, out, err = cli(
        "perf", "explain", "--device", "cpu", "--images", "1", "--masks", "6",
        "--gradcam-images", "3", "--batch", "4", "--repeat", "1", "--threads", "1", "--json",
    )  # fmt: skip
    assert code == 0, err
    rows = json.loads(out)["rows"]
    assert [r["case"] for r in rows] == ["rise", "rise", "gradcam"]
    assert rows[0]["max_abs_diff"] is None  # the model-only row compares time, not maps
    for r in rows[1:]:
        assert r["max_abs_diff"] < 1e-5
    assert all(np.isfinite(r["ratio"]) and r["ratio"] > 0 for r in rows)


@pytest.mark.parametrize("clock", ["cpu", "wall"])
def test_perf_explain_clock(cli, clock: str) -> None:
    """CPU time by default on the CPU (a shared machine's wall clock counts other jobs)."""
    args = ["perf", "explain", "--device", "cpu", "--images", "1", "--masks", "4",
            "--gradcam-images", "2", "--batch", "4", "--repeat", "1", "--threads", "1"]  # fmt: skip
    code, out, err = cli(*args, "--json", "--clock", clock)
    assert code == 0, err
    assert json.loads(out)["environment"]["clock"] == clock
    code, out, err = cli(*args)
    assert code == 0, err
    assert "process CPU seconds" in out.splitlines()[0]


@pytest.mark.parametrize("backbone", ["small-cnn", "vit-micro"])
def test_perf_explain_on_another_backbone(cli, backbone: str) -> None:
    code, out, err = cli(
        "perf", "explain", "--device", "cpu", "--images", "1", "--masks", "4",
        "--gradcam-images", "3", "--batch", "4", "--repeat", "1", "--threads", "1", "--json",
        "--backbone", backbone,
    )  # fmt: skip
    assert code == 0, err
    rows = json.loads(out)["rows"]
    assert all(r["max_abs_diff"] < 1e-5 for r in rows[1:])


def test_perf_explain_unknown_backbone_is_one_line(cli) -> None:
    code, _out, err = cli("perf", "explain", "--device", "cpu", "--backbone", "nosuch-net")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "nosuch-net" in err
