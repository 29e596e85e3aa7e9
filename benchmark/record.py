"""The run record: everything needed to trust and reproduce one number.

A record's id is content-addressed: the hash of what determines the result (method, dataset
version, fingerprint and options, hyperparameters, seed, code version, and the environment key:
torch version, device kind, CPU threads; ``benchmark.device.environment_key``). Everything
else (metrics, timings, the full environment) is what the run produced.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

SCHEMA_VERSION = 1


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def content_id(obj: Any, length: int = 16) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]


@dataclass
class RunRecord:
    """One run of one method on one dataset with one seed."""

    run_id: str
    method: str
    dataset: str
    track: str
    seed: int
    hparams: dict[str, Any]
    dataset_version: str
    dataset_fingerprint: str
    dataset_options: dict[str, Any]
    code: dict[str, str]
    metrics: dict[str, dict[str, float]]  # split -> key -> value
    details: dict[str, Any] = field(default_factory=dict)
    conventions: dict[str, str] = field(default_factory=dict)
    timings: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    checkpoint: str = ""
    created: str = ""
    schema: int = SCHEMA_VERSION
    #: splits evaluated beyond the dataset's ``eval_splits`` (e.g. ``val`` for model selection)
    extra_splits: list[str] = field(default_factory=list)
    #: the environment that decides the bits (``benchmark.device.environment_key``); part of
    #: the id when not empty (records written before it existed have none)
    env_key: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def identity(
        *,
        method: str,
        dataset: str,
        dataset_version: str,
        dataset_fingerprint: str,
        dataset_options: dict[str, Any],
        hparams: dict[str, Any],
        seed: int,
        code: str,
        extra_splits: Sequence[str] = (),
        env_key: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The inputs the run id hashes (``extra_splits`` and ``env_key`` only when given)."""
        out = {
            "schema": SCHEMA_VERSION,
            "method": method,
            "dataset": dataset,
            "dataset_version": dataset_version,
            "dataset_fingerprint": dataset_fingerprint,
            "dataset_options": dataset_options,
            "hparams": hparams,
            "seed": seed,
            "code": code,
        }
        if extra_splits:
            out["extra_splits"] = list(extra_splits)
        if env_key:
            out["env_key"] = dict(env_key)
        return out

    def expected_id(self) -> str:
        return content_id(
            self.identity(
                method=self.method,
                dataset=self.dataset,
                dataset_version=self.dataset_version,
                dataset_fingerprint=self.dataset_fingerprint,
                dataset_options=self.dataset_options,
                hparams=self.hparams,
                seed=self.seed,
                code=self.code.get("hash", ""),
                extra_splits=self.extra_splits,
                env_key=self.env_key,
            )
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        if data.get("schema") != SCHEMA_VERSION:
            raise ValueError(f"record schema {data.get('schema')} is not {SCHEMA_VERSION}")
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    def flat_metrics(self, primary: str = "test") -> dict[str, float]:
        """``{"acc": .., "auroc@ood_far": ..}``: the primary split's keys unsuffixed."""
        out: dict[str, float] = {}
        for split, values in self.metrics.items():
            for key, value in values.items():
                out[key if split == primary else f"{key}@{split}"] = value
        return out
