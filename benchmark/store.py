"""The results store: append-only run records and cached checkpoints under one folder.

Layout (``--results DIR``, else ``$BENCH_RESULTS``, else ``./results``)::

    DIR/runs/<run_id>.json          one record per run, written atomically
    DIR/checkpoints/<key>.pt        trained models, keyed by what shaped them
    DIR/predictions/<run_id>.pt     per-sample outputs of a run (``--predictions``, submissions)
    DIR/locks/<run_id>.lock         held (flock) while a process trains that run
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from benchmark.errors import BenchError
from benchmark.io import (
    STALE_AFTER_S,
    atomic_torch_save,
    atomic_write_json,
    clean_stale_temporaries,
    torch_load,
)
from benchmark.outputs import Outputs
from benchmark.record import RunRecord

try:
    import fcntl
except ImportError:  # not POSIX: runs are not protected against concurrent duplicates
    fcntl = None  # type: ignore[assignment]


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
        self.predictions = self.root / "predictions"
        self.locks = self.root / "locks"

    def clean_temporaries(self, older_than_s: float = STALE_AFTER_S) -> int:
        """Remove the temporary files that killed writers left in every folder of the store
        (runs, checkpoints, predictions, sweeps, leaderboard); ``benchmark.io`` says which are
        stale. Every command that writes into a store calls it. Returns how many."""
        folders = (self.runs, self.checkpoints, self.predictions, self.root / "sweeps")
        return sum(
            clean_stale_temporaries(f, older_than_s) for f in (*folders, self.root / "leaderboard")
        )

    def check_writable(self) -> None:
        """Refuse, before anything trains, a ``--results`` that is a file or cannot be created
        (one line naming it); nothing is created here."""
        if self.root.exists() and not self.root.is_dir():
            raise BenchError(f"--results {self.root}: not a folder (a file has that name)")
        ancestor = self.root
        while not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            raise BenchError(f"--results {self.root}: cannot be created ({ancestor} is a file)")
        if not os.access(ancestor, os.W_OK | os.X_OK):
            raise BenchError(f"--results {self.root}: cannot be created in {ancestor}")

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
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise TypeError(f"a JSON {type(data).__name__}, not an object")
            return RunRecord.from_dict(data)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
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
        """The cached checkpoint ``key``, or None. One that cannot be read (truncated, not a
        checkpoint) is an error naming the file: delete it to retrain (it is never silently
        replaced, so a damaged disk or a copy gone wrong does not go unnoticed)."""
        path = self.checkpoint_path(key)
        if not path.is_file():
            return None
        try:
            payload = torch_load(path)
        except Exception as exc:
            reason = str(exc).split(". ")[0].splitlines()[0][:120]
            raise BenchError(
                f"cached checkpoint {path} is unreadable ({type(exc).__name__}: {reason}); "
                f"delete it to retrain"
            ) from None
        if not isinstance(payload, dict) or "state" not in payload:
            raise BenchError(
                f"cached checkpoint {path} is not a bench checkpoint; delete it to retrain"
            )
        return payload

    def save_checkpoint(self, key: str, payload: dict[str, Any]) -> None:
        atomic_torch_save(self.checkpoint_path(key), payload)

    # -- per-sample predictions ----------------------------------------------------------
    def predictions_path(self, run_id: str) -> Path:
        return self.predictions / f"{run_id}.pt"

    def has_predictions(self, run_id: str) -> bool:
        return self.predictions_path(run_id).is_file()

    def save_predictions(self, run_id: str, outputs: Mapping[str, Outputs]) -> None:
        """Every split's outputs (CPU tensors), atomically."""
        atomic_torch_save(
            self.predictions_path(run_id),
            {split: outputs_payload(out) for split, out in outputs.items()},
        )

    def load_predictions(self, run_id: str | Path) -> dict[str, Outputs]:
        path = Path(run_id) if isinstance(run_id, Path) else self.predictions_path(run_id)
        try:
            payload = torch_load(path)
            return {split: outputs_from_payload(p) for split, p in payload.items()}
        except Exception as exc:  # unreadable or not the layout written above
            raise BenchError(f"unreadable predictions file {path}: {exc}") from exc

    # -- one process per run -------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, run_id: str) -> Iterator[None]:
        """Hold an exclusive lock on ``run_id`` (waits for another holder; released when the
        holder exits or is killed, since the kernel drops flock locks with the process)."""
        if fcntl is None:
            yield
            return
        self.locks.mkdir(parents=True, exist_ok=True)
        with (self.locks / f"{run_id}.lock").open("a") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def locked(self, run_id: str) -> bool:
        """Whether another process holds ``run_id``'s lock right now."""
        path = self.locks / f"{run_id}.lock"
        if fcntl is None or not path.is_file():
            return False
        with path.open("a") as f:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        return False


def outputs_payload(out: Outputs) -> dict[str, Any]:
    """An ``Outputs`` as a dict of CPU tensors (loadable with ``weights_only=True``)."""
    payload: dict[str, Any] = {k: v.detach().cpu() for k, v in out.tensors().items()}
    payload["ood_score_kind"] = out.ood_score_kind
    return payload


def outputs_from_payload(payload: Mapping[str, Any]) -> Outputs:
    kwargs: dict[str, Any] = {"ood_score_kind": str(payload.get("ood_score_kind", ""))}
    extras = {}
    known = {"logits", "features", "ood_score", "saliency", "probs_"}
    for key, value in payload.items():
        if key == "ood_score_kind":
            continue
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"entry {key!r} is not a tensor")
        if key.startswith("extras."):
            extras[key.removeprefix("extras.")] = value
        elif key in known:
            kwargs[key] = value
        else:
            raise ValueError(f"unknown output {key!r}")
    return Outputs(**kwargs, extras=extras)
