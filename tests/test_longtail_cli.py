"""``bench plot`` and ``bench perf train``: the happy path, the outputs, the errors."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import tiny_settings


def test_plot_per_class_accuracy(cli, tmp_path: Path) -> None:
    results = tmp_path / "r"
    sets = [a for pair in tiny_settings("glyph-lt") for a in ("--set", pair)]
    for method, seeds in (("ce", ["0", "1"]), ("deconfound", ["0"])):
        code, _, err = cli("run", "--method", method, "--dataset", "glyph-lt", "--seed", *seeds,
                           "--results", results, "--quiet", *sets)  # fmt: skip
        assert code == 0, err
    out_png = tmp_path / "fig.png"
    code, out, err = cli("plot", "--results", results, "--dataset", "glyph-lt",
                         "--method", "deconfound,ce", "--out", out_png)  # fmt: skip
    assert code == 0, err
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = out.splitlines()
    assert lines[2].startswith("deconfound") and lines[3].startswith("ce")  # the given order
    assert lines[2].split()[1] == "1" and lines[3].split()[1] == "2"  # seeds per row
    assert "wrote" in out and "few" in lines[0]
    code, out, _ = cli("plot", "--results", results)  # default path under the results folder
    assert code == 0 and (results / "plots" / "per-class-glyph-lt-test.png").is_file()

    code, _, err = cli("plot", "--results", results, "--out", tmp_path / "fig.jpg")
    assert code == 2 and ".png" in err
    code, _, err = cli("plot", "--results", results, "--method", "nothing-like-this")
    assert code == 2 and "no runs with per-class accuracies" in err
    code, _, err = cli("plot", "--results", tmp_path / "empty")
    assert code == 2 and "no runs" in err


def test_perf_train_prints_both_loops(cli) -> None:
    args = ["perf", "train", "--backbone", "tiny-cnn", "--batch-size", "8", "--steps", "3",
            "--warmup", "1", "--workers", "0", "--size", "16", "--classes", "5"]  # fmt: skip
    code, out, err = cli(*args, "--json")
    assert code == 0, err
    data = json.loads(out)
    assert [r["loop"] for r in data["loops"]] == ["reference", "harness"]
    assert all(r["images_per_s"] > 0 and r["steps"] == 3 for r in data["loops"])
    assert data["setup"]["batch_size"] == 8 and data["loops"][0]["speedup"] == 1.0
    code, out, err = cli(*args, "--only", "harness")
    assert code == 0 and "images/s" in out and "harness" in out and "reference" not in out
    code, _, err = cli(*args, "--channels", "2")
    assert code == 2 and "--channels" in err
    code, _, err = cli(*args, "--fast", "graph", "--device", "cpu", "--only", "harness")
    assert code == 2 and "needs a CUDA device" in err


def test_run_protocol_and_fast_options(cli, tmp_path: Path) -> None:
    base = ["run", "--method", "tde", "--dataset", "glyph-lt", "--results", tmp_path, "--quiet"]
    code, _, err = cli(*base, "--protocol", "cifar100")
    assert code == 2 and "unknown protocol 'cifar100'" in err and "cifar100-lt" in err
    code, _, err = cli(*base, "--fast", "graph", "--device", "cpu")
    assert code == 2 and "needs a CUDA device" in err
    assert not (tmp_path / "runs").exists()  # nothing half-written
