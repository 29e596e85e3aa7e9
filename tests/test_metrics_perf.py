"""``bench perf metrics``: each metric timed next to its reference, agreeing with it."""

from __future__ import annotations

import json

import pytest
import torch

from benchmark.cli import perf


def test_perf_metrics_json_agrees_with_references(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(perf.INSDEL_SIDE, "cpu", 8)  # 65 curve points: a quick loop reference
    code, out, err = cli(
        "perf", "metrics", "--device", "cpu", "--sizes", "quick", "insertion-deletion=1",
        "--only", "[eoi]*", "--repeat", "1", "--json", "--quiet",
    )  # fmt: skip
    assert code == 0, err
    payload = json.loads(out)
    rows = {r["case"]: r for r in payload["rows"]}
    assert set(rows) == {
        "ece",
        "ood",
        "insertion-deletion",
        "insertion-deletion: model-only batched inference",
    }
    assert rows["ood"]["max_abs_diff"] < 1e-9 and rows["ece"]["max_abs_diff"] < 1e-4
    assert rows["insertion-deletion"]["max_abs_diff"] < 1e-5
    for name in ("ece", "ood", "insertion-deletion"):
        assert rows[name]["ours_s"] > 0 and rows[name]["reference_s"] > 0
        assert rows[name]["speedup"] > 0
    assert payload["environment"]["device"] == "cpu"


def test_perf_metrics_table(cli) -> None:
    code, out, err = cli("perf", "metrics", "--device", "cpu", "--sizes", "bacc=2000", "--only",
                         "bacc", "--quiet", "--threads", "1")  # fmt: skip
    assert code == 0, err
    assert "sklearn balanced_accuracy_score" in out and "speed-up" in out and "×" in out
    assert "1 torch threads" in out


def test_perf_errors(cli) -> None:
    if not torch.cuda.is_available():
        code, _, err = cli("perf", "metrics", "--device", "cuda")
        assert code == 2 and "no CUDA GPU" in err
    code, _, err = cli("perf", "metrics", "--sizes", "dcor=10")
    assert code == 2 and "did you mean 'dcor2'" in err
    code, _, err = cli("perf", "metrics", "--sizes", "huge")
    assert code == 2 and "size preset" in err
    code, _, err = cli("perf", "metrics", "--only", "nothing*")
    assert code == 2 and "unknown perf case" in err
    code, _, err = cli("perf")
    assert code == 2 and "metrics" in err


def test_size_presets() -> None:
    cpu = perf.parse_sizes([], torch.device("cpu"))
    assert cpu["dcor2"] == 2_000 and cpu["ood"] == 1_000_000
    gpu = perf.parse_sizes([], torch.device("cuda"))
    assert gpu["dcor2"] == 5_000 and gpu["dcor2-large"] == 100_000
    assert perf.parse_sizes(["quick", "ece=1e3"], torch.device("cpu"))["ece"] == 1000
