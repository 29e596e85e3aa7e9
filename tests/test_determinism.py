"""The same seed gives the same numbers on the CPU; checkpoints are reused, never retrained."""

from __future__ import annotations

from pathlib import Path

import torch

from benchmark.device import select_device
from benchmark.hparams import parse_assignments
from benchmark.runner import Runner
from benchmark.store import Store

from conftest import tiny_settings

SETTINGS = parse_assignments([*tiny_settings("glyph-lt"), "epochs=2"])


def run(root: Path, seed: int = 0):
    runner = Runner(Store(root), select_device("cpu"), progress=False)
    record, _ = runner.run("erm", "glyph-lt", seed, SETTINGS)
    return record, Store(root).load_checkpoint(record.checkpoint)


def test_same_seed_same_numbers(tmp_path: Path) -> None:
    a, ckpt_a = run(tmp_path / "a")
    b, ckpt_b = run(tmp_path / "b")
    assert a.run_id == b.run_id
    assert a.metrics == b.metrics or str(a.metrics) == str(b.metrics)  # NaN-safe equality
    for key in ckpt_a["state"]:
        assert torch.equal(ckpt_a["state"][key], ckpt_b["state"][key]), key


def test_other_seed_other_model(tmp_path: Path) -> None:
    _, ckpt_a = run(tmp_path / "a", seed=0)
    _, ckpt_b = run(tmp_path / "b", seed=1)
    assert any(not torch.equal(ckpt_a["state"][k], ckpt_b["state"][k]) for k in ckpt_a["state"])


def test_checkpoint_is_reused(tmp_path: Path) -> None:
    first, _ = run(tmp_path)
    assert first.timings["checkpoint"] == "trained"
    (tmp_path / "runs" / f"{first.run_id}.json").unlink()  # force re-evaluation
    again, _ = run(tmp_path)
    assert again.timings["checkpoint"] == "cached"
    assert str(again.metrics) == str(first.metrics)
