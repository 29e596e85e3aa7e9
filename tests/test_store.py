"""Run records: round trip, content-addressed ids, atomic append-only writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark.errors import BenchError
from benchmark.io import atomic_write_bytes
from benchmark.record import RunRecord, content_id
from benchmark.store import Store


def make_record(seed: int = 0, **changes: object) -> RunRecord:
    fields = dict(
        method="erm",
        dataset="glyph-lt",
        dataset_version="1",
        dataset_fingerprint="abc",
        dataset_options={"imbalance": 100.0},
        hparams={"lr": 0.1},
        seed=seed,
    )
    fields.update(changes)  # type: ignore[arg-type]
    code = {"hash": "c0de"}
    run_id = content_id(RunRecord.identity(code=code["hash"], **fields))  # type: ignore[arg-type]
    return RunRecord(
        run_id=run_id,
        track="longtail",
        code=code,
        metrics={"test": {"acc": 0.5 + seed / 10, "few": float("nan")}},
        **fields,
    )  # type: ignore[arg-type]


def test_round_trip(tmp_path: Path) -> None:
    store = Store(tmp_path)
    record = make_record()
    path = store.write(record)
    back = store.get(record.run_id)
    assert back.to_dict().keys() == record.to_dict().keys()
    assert back.metrics["test"]["acc"] == 0.5
    assert back.metrics["test"]["few"] != back.metrics["test"]["few"]  # NaN survives
    assert json.loads(path.read_text())["run_id"] == record.run_id
    assert back.expected_id() == record.run_id


def test_id_depends_on_every_identity_field() -> None:
    base = make_record().run_id
    assert make_record().run_id == base
    for change in (
        {"seed": 1},
        {"hparams": {"lr": 0.2}},
        {"dataset_fingerprint": "abd"},
        {"dataset_options": {"imbalance": 50.0}},
        {"method": "ce"},
    ):
        assert make_record(**change).run_id != base, change


def test_append_only(tmp_path: Path) -> None:
    store = Store(tmp_path)
    record = make_record()
    store.write(record)
    record.metrics["test"]["acc"] = 0.99
    store.write(record)
    assert store.get(record.run_id).metrics["test"]["acc"] == 0.5


def test_prefix_lookup_and_errors(tmp_path: Path) -> None:
    store = Store(tmp_path)
    a, b = make_record(0), make_record(1)
    store.write(a)
    store.write(b)
    assert store.get(a.run_id[:10]).seed == 0
    with pytest.raises(BenchError, match="no run"):
        store.get("ffffffffffff")


def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    def broken_fsync(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(tmp_path / "runs" / "x.json", b"{}")
    assert list((tmp_path / "runs").iterdir()) == []


def test_reader_ignores_temporary_files_and_reports_corrupt_ones(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.write(make_record())
    (store.runs / ".abc.json.123.tmp").write_text("{half")
    assert len(list(store.records())) == 1
    (store.runs / "broken.json").write_text("{half")
    with pytest.raises(BenchError, match="corrupt run record"):
        list(store.records())


def test_results_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    assert Store().root == tmp_path / "results"
    monkeypatch.setenv("BENCH_RESULTS", str(tmp_path / "env"))
    assert Store().root == tmp_path / "env"
    assert Store(tmp_path / "flag").root == tmp_path / "flag"
