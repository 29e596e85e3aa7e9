"""A sweep killed with SIGKILL at random moments resumes with no duplicated, lost or corrupt
record; two sweeps writing to one results folder at once lose nothing and train nothing twice."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmark.cli import main as bench_main
from benchmark.record import RunRecord
from benchmark.store import Store

from conftest import REPO, tiny_settings

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="uses fork-server and SIGKILL")


def sweep_args(results: Path, seeds: list[int]) -> list[str]:
    sets = [a for pair in tiny_settings("glyph-lt") for a in ("--set", pair)]
    return [
        "sweep", "--method", "erm", "--dataset", "glyph-lt", "--grid", "lr=0.01,0.1",
        "--select", "val-acc", "--seed", *map(str, seeds), "--results", str(results),
        "--quiet", *sets,
    ]  # fmt: skip


def check_store(root: Path) -> dict[str, RunRecord]:
    """Every record parses, is complete, is named after its content-addressed id; no dupes."""
    out = {}
    for path in sorted((root / "runs").glob("*.json")):
        record = RunRecord.from_dict(json.loads(path.read_text()))
        assert path.stem == record.run_id == record.expected_id()
        assert record.metrics.get("test") and record.metrics.get("val"), path
        assert record.run_id not in out
        out[record.run_id] = record
    return out


def comparable(records: dict[str, RunRecord]) -> dict[str, tuple]:
    return {
        i: (r.method, r.seed, json.dumps(r.hparams, sort_keys=True), json.dumps(r.metrics))
        for i, r in records.items()
    }


def test_sigkill_at_random_moments_then_resume(tmp_path: Path) -> None:
    seeds = [0, 1, 2]
    reference = tmp_path / "reference"
    assert bench_main(sweep_args(reference, seeds)) == 0
    expected = check_store(reference)
    assert len(expected) == 2 + 2  # two search runs (seed 0), then seeds 1 and 2 of the best

    results = tmp_path / "killed"
    ctx = mp.get_context("forkserver")  # children start without re-importing torch
    ctx.set_forkserver_preload(["benchmark.cli", "benchmark.launchers", "benchmark.runner"])
    rng = random.Random(1234)
    kills = 0
    while kills < 10:
        child = ctx.Process(target=bench_main, args=(sweep_args(results, seeds),))
        child.start()
        child.join(timeout=rng.uniform(0.05, 1.2))
        if child.exitcode is None:
            os.kill(child.pid, signal.SIGKILL)
            child.join()
            kills += 1
        check_store(results)  # between kills too: every record on disk is whole
        if child.exitcode == 0:  # it finished before the kill: start again from scratch
            for path in (results / "runs").glob("*.json"):
                path.unlink()
    # an 11th kill, of a real `python -m benchmark` process, at a random moment
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmark", *sweep_args(results, seeds)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(rng.uniform(2.0, 4.0))
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    assert bench_main(sweep_args(results, seeds)) == 0  # resume to the end
    got = check_store(results)
    assert comparable(got) == comparable(expected)  # same runs, same numbers
    leftovers = [p.name for p in (results / "runs").iterdir() if p.suffix != ".json"]
    assert all(p.startswith(".") and p.endswith(".tmp") for p in leftovers)


def test_two_sweeps_on_one_folder_at_once(tmp_path: Path) -> None:
    results = tmp_path / "shared"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = []
    for seeds in ([0, 1, 2], [0, 1, 2, 3]):  # overlapping: seeds 0-2 are in both
        out = tmp_path / f"out{len(procs)}.json"
        procs.append(
            (
                subprocess.Popen(
                    [sys.executable, "-m", "benchmark", *sweep_args(results, seeds), "--json"],
                    cwd=REPO,
                    env=env,
                    stdout=out.open("w"),
                    stderr=subprocess.PIPE,
                ),
                out,
            )
        )
    trained: list[str] = []
    for proc, out in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
        payload = json.loads(out.read_text())
        trained += [o["run_id"] for o in [*payload["search"], *payload["final"]] if not o["cached"]]
    records = check_store(results)
    assert len(records) == 2 + 3  # search (2) + seeds 1, 2, 3 of the best: nothing lost
    assert len(trained) == len(set(trained))  # no run was trained by both sweeps
    assert set(trained) == set(records)
    assert list(Store(results).records())  # the folder reads back whole
