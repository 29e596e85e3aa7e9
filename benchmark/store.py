"""The results store: append-only run records and cached checkpoints under one folder.

Layout (``--results DIR``, else ``$BENCH_RESULTS``, else ``./results``)::

    DIR/runs/<run_id>.json          one record per run, written atomically
    DIR/checkpoints/<key>.pt        trained models, keyed by what shaped them
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmark.errors import BenchError
from benchmark.io import atomic_torch_save, atomic_write_json, torch_load
from benchmark.record import RunRecord


def results_root(cli_value: str | Path | None = None) -> Path:
    if cli_value:
        return Path(cli_value)
    env = os.environ.get("BENCH_RESULTS")
    return Path(env) if env else Path.cwd() / "results"


class Store:
    def __init__(self, root: str | Path | None = None) -> None:
        self.root = results_root(root)
        self.runs = self.root / "runs"
        self.checkpoints = self.root / "checkpoints"

    # -- records -------------------------------------------------------------------------
    def path(self, run_id: str) -> Path:
        return self.runs / f"{run_id}.json"

    def has(self, run_id: str) -> bool:
        return self.path(run_id).is_file()

    def write(self, record: RunRecord) -> Path:
        """Write ``record`` atomically; an existing record with this id is kept (append-only)."""
        path = self.path(record.run_id)
        if not path.exists():
            atomic_write_json(path, record.to_dict())
        return path

    def read(self, path: Path) -> RunRecord:
        try:
            return RunRecord.from_dict(json.loads(path.read_text()))
        except (json.JSONDecodeError, ValueError, TypeError) as exc:
            raise BenchError(f"corrupt run record {path}: {exc}") from exc

    def get(self, run_id: str) -> RunRecord:
        """A record by id or unique id prefix."""
        if self.has(run_id):
            return self.read(self.path(run_id))
        matches = sorted(self.runs.glob(f"{run_id}*.json")) if run_id and self.runs.is_dir() else []
        if len(matches) == 1:
            return self.read(matches[0])
        if len(matches) > 1:
            raise BenchError(f"run id prefix '{run_id}' is ambiguous ({len(matches)} runs match)")
        raise BenchError(f"no run '{run_id}' in {self.runs}")

    def records(self) -> Iterator[RunRecord]:
        if not self.runs.is_dir():
            return
        for path in sorted(self.runs.glob("*.json")):  # temporary files start with "."
            yield self.read(path)

    # -- checkpoints ---------------------------------------------------------------------
    def checkpoint_path(self, key: str) -> Path:
        return self.checkpoints / f"{key}.pt"

    def load_checkpoint(self, key: str) -> dict[str, Any] | None:
        path = self.checkpoint_path(key)
        return torch_load(path) if path.is_file() else None

    def save_checkpoint(self, key: str, payload: dict[str, Any]) -> None:
        atomic_torch_save(self.checkpoint_path(key), payload)
