"""Submission bundles: ``bench submit`` writes one, ``bench verify`` checks it end to end.

``submit`` checks a method plugin (API, declared hyperparameters, a smoke run), runs a
protocol (datasets, seeds, settings, optional search) and writes a folder::

    BUNDLE/manifest.json            what, who, how; sha256 of every other file
    BUNDLE/plugin/<file>.py         the plugin's source files
    BUNDLE/runs/<run_id>.json       the run records
    BUNDLE/predictions/<run_id>.pt  per-sample outputs of every evaluated split
    BUNDLE/environment.json         library versions and hardware

``verify`` trusts none of it: it checks every file hash, every record's content-addressed id
and code hashes against the bundled plugin source, rebuilds each dataset and compares its
fingerprint, recomputes every metric from the stored predictions and the dataset's labels with
the runner's own scoring code, and only then appends rows (built from the recomputed numbers)
to a leaderboard CSV. ``--quick`` bundles are verified but never enter a leaderboard.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import tempfile
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import benchmark
from benchmark.dataset import DATASETS
from benchmark.errors import BenchError
from benchmark.hparams import HParam, Space, parse_assignments
from benchmark.io import atomic_write_json, umask
from benchmark.leaderboard import LEVELS as _LEVELS
from benchmark.method import METHODS, Method
from benchmark.record import RunRecord, content_id
from benchmark.sources import core_hash
from benchmark.store import Store
from benchmark.sweep import SweepSpec, fmt_value

BUNDLE_SCHEMA = 1
#: settings that make any method train in about a second (quick mode and the smoke run)
TINY_HP = {"epochs": 1, "batch_size": 8, "backbone": "tiny-cnn"}
#: absolute tolerance when a recomputed metric is compared with the recorded one
TOLERANCE = 1e-6


class Rejected(BenchError):
    """A bundle (or leaderboard file) that failed a check; the message is the reason."""


# -- protocols --------------------------------------------------------------------------------
@dataclass
class Protocol:
    """What a submission must run. ``settings``: ``--set`` pairs per dataset (``"*"``: all).
    ``datasets`` None means every built-in dataset the method is compatible with."""

    name: str = "official-v1"
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    datasets: list[str] | None = None
    settings: dict[str, list[str]] = field(default_factory=dict)
    select: str | None = None
    random: int = 0
    search: list[str] | None = None
    quick: bool = False

    def settings_for(self, dataset: str) -> dict[str, str]:
        return parse_assignments([*self.settings.get("*", []), *self.settings.get(dataset, [])])

    def protocol_id(self) -> str:
        return content_id(asdict(self))

    @classmethod
    def load(cls, path: str | Path) -> Protocol:
        """A protocol from a TOML file (keys as the fields of this class)."""
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise BenchError(f"protocol file {path}: {exc}") from exc
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise BenchError(f"protocol file {path}: unknown key(s) {', '.join(unknown)}")
        if data.get("quick"):
            raise BenchError(f"protocol file {path}: quick mode is --quick, not a protocol")
        return cls(**data)


OFFICIAL = Protocol()


def quick_protocol(datasets: Sequence[str]) -> Protocol:
    """Tiny data, one epoch, two seeds: checks the pipeline in seconds; never a leaderboard."""
    settings = {
        d: [
            *(f"dataset.{k}={fmt_value(v)}" for k, v in DATASETS.get(d).tiny.items()),
            *(f"{k}={fmt_value(v)}" for k, v in TINY_HP.items()),
        ]
        for d in datasets
    }
    return Protocol(
        name="quick", seeds=[0, 1], datasets=list(datasets), settings=settings, quick=True
    )


# -- plugin checks ----------------------------------------------------------------------------
def sha256_file(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def plugin_sources(mcls: type[Method]) -> list[Path]:
    """The files whose hashes make up ``source_hash(mcls)``, in the same order (plugin files,
    then the track modules they import)."""
    from benchmark.sources import plugin_files

    return plugin_files(mcls)


def check_plugin(method: str, plugin_files: Sequence[str | Path]) -> list[str]:
    """API checks of a method plugin; raises ``BenchError`` with the first problem, returns
    notes (warnings) otherwise."""
    from benchmark.dataset import TRACKS
    from benchmark.training import PROTOCOL

    mcls = METHODS.get(method)
    origin = Path(METHODS.origin(method).rsplit(":", 1)[0]).resolve()
    files = [Path(f).resolve() for f in plugin_files]
    inside = [f for f in files if origin == f or (f.is_dir() and origin.is_relative_to(f))]
    if not inside:
        raise BenchError(
            f"method {method} is defined in {origin}, not in the plugin file(s) given with "
            f"--plugin ({', '.join(map(str, files)) or 'none'})"
        )
    notes = []
    if not issubclass(mcls, Method):
        raise BenchError(f"{method} does not subclass benchmark.Method")
    if not mcls.tracks or not set(mcls.tracks) <= set(TRACKS):
        raise BenchError(f"{method}.tracks must be a non-empty subset of {TRACKS}")
    if not isinstance(mcls.hparams, dict):
        raise BenchError(f"{method}.hparams must be a dict of name -> HParam")
    for name, h in mcls.hparams.items():
        if not isinstance(h, HParam):
            raise BenchError(f"{method}.hparams[{name!r}] is not an HParam")
        if name in PROTOCOL:
            raise BenchError(
                f"{method} redeclares the shared setting {name!r}; set its default with "
                f"protocol_defaults = {{{name!r}: ...}} instead"
            )
        h.check(name, h.default)
        if h.space is not None:
            if not isinstance(h.space, Space):
                raise BenchError(f"{method}.hparams[{name!r}].space is not a search space")
            import numpy as np

            for value in [h.space.sample(np.random.RandomState(0)), *h.space.grid(3)]:
                try:
                    h.check(name, value)
                except BenchError as exc:
                    raise BenchError(
                        f"{method}.hparams[{name!r}]: its search space yields {value!r}, "
                        f"which its default's type rejects ({exc})"
                    ) from None
        if not h.help:
            notes.append(f"hyperparameter {name!r} has no help text")
    if not (mcls.__doc__ or "").strip():
        notes.append(f"{method} has no docstring (cite the paper and equation there)")
    if not mcls.paper:
        notes.append(f"{method} sets no `paper` reference")
    return notes


def compatible_datasets(method: str, datasets: Sequence[str] | None) -> list[str]:
    mcls = METHODS.get(method)
    if datasets:
        for d in datasets:
            why = mcls.incompatibility(DATASETS.get(d))
            if why:
                raise BenchError(why)
        return list(datasets)
    out = [n for n, c in DATASETS.items() if c.builtin() and not mcls.incompatibility(c)]
    if not out:
        raise BenchError(f"{method} is compatible with no built-in dataset; name --datasets")
    return out


def smoke_run(method: str, dataset: str, device: Any) -> RunRecord:
    """One tiny run in a throw-away results folder: the method trains, predicts finite
    outputs and gets metrics."""
    from benchmark.runner import Runner

    settings = quick_protocol([dataset]).settings_for(dataset)
    with tempfile.TemporaryDirectory(prefix="bench-smoke-") as tmp:
        try:
            record, _ = Runner(Store(tmp), device, progress=False).run(
                method, dataset, 0, settings, predictions=True
            )
        except BenchError as exc:
            raise BenchError(f"smoke run of {method} on tiny {dataset} failed: {exc}") from exc
    if not any(record.metrics.values()):
        raise BenchError(f"smoke run of {method} on {dataset} produced no metric")
    return record


# -- submit -----------------------------------------------------------------------------------
def library_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for name in ("torch", "torchvision", "numpy", "scipy", "pandas", "scikit-learn", "bench"):
        with contextlib.suppress(md.PackageNotFoundError):
            out[name] = md.version(name)
    return out


@dataclass
class Submitted:
    path: Path
    bundle_id: str
    manifest: dict[str, Any]
    notes: list[str]


def submit(
    method: str,
    plugin_files: Sequence[str | Path],
    out: str | Path,
    *,
    protocol: Protocol = OFFICIAL,
    results: str | Path | None = None,
    launcher: Any = None,
    device: Any = None,
    force: bool = False,
) -> Submitted:
    """Check, run the protocol, write the bundle (atomically: a temporary folder renamed)."""
    from benchmark.device import environment, select_device
    from benchmark.launchers import LocalLauncher
    from benchmark.sweep import Sweep

    out = Path(out)
    if out.exists() and not force:
        raise BenchError(f"{out} exists; choose another --out or pass --force")
    device = device or select_device("auto")
    notes = check_plugin(method, plugin_files)
    datasets = compatible_datasets(method, protocol.datasets)
    smoke_run(method, datasets[0], device)
    store = Store(results)
    launcher = launcher or LocalLauncher(device=str(device), progress=False)
    runs: list[RunRecord] = []
    info: dict[str, Any] = {}
    selections = []
    for dataset in datasets:
        spec = SweepSpec(
            methods=[method],
            datasets=[dataset],
            seeds=list(protocol.seeds),
            settings=protocol.settings_for(dataset),
            random=protocol.random,
            search=protocol.search,
            select=protocol.select,
            predictions=True,
        )
        result = Sweep(spec, store, launcher).run()
        if result.failed:
            first = result.failed[0]
            raise BenchError(f"{method} on {dataset} seed {first.job.seed}: {first.error}")
        records = [store.get(o.run_id) for o in result.final.values()]
        runs += records
        chosen = {}
        for s in result.selections:
            selections.append(asdict(s))
            chosen = s.settings
        info[dataset] = {
            "version": records[0].dataset_version,
            "fingerprint": records[0].dataset_fingerprint,
            "options": records[0].dataset_options,
            "settings": {**spec.settings, **chosen},
        }
    mcls = METHODS.get(method)
    sources = plugin_sources(mcls)
    tmp = Path(
        tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent if out.parent.exists() else None)
    )
    tmp.chmod(0o777 & ~umask())  # mkdtemp makes it 0o700 whatever the umask
    try:
        bundled = []
        for src in sources:
            builtin = _builtin_name(src)
            entry = {"sha256": sha256_file(src), "builtin": builtin or ""}
            if not builtin:
                rel = f"plugin/{src.name}"
                (tmp / "plugin").mkdir(exist_ok=True)
                shutil.copyfile(src, tmp / rel)
                entry["file"] = rel
            bundled.append(entry)
        (tmp / "runs").mkdir()
        (tmp / "predictions").mkdir()
        (tmp / "checkpoints").mkdir()
        run_entries = []
        for r in runs:
            shutil.copyfile(store.path(r.run_id), tmp / "runs" / f"{r.run_id}.json")
            shutil.copyfile(
                store.predictions_path(r.run_id), tmp / "predictions" / f"{r.run_id}.pt"
            )
            ckpt = f"checkpoints/{r.checkpoint}.pt"
            if not store.checkpoint_path(r.checkpoint).is_file():
                raise BenchError(f"run {r.run_id}: its checkpoint {r.checkpoint} is not stored")
            shutil.copyfile(store.checkpoint_path(r.checkpoint), tmp / ckpt)
            run_entries.append(
                {"run_id": r.run_id, "dataset": r.dataset, "seed": r.seed, "checkpoint": ckpt}
            )
        atomic_write_json(
            tmp / "environment.json",
            {"libraries": library_versions(), **environment(device)},
        )
        manifest = {
            "kind": "bench-submission",
            "bundle_schema": BUNDLE_SCHEMA,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "bench_version": benchmark.__version__,
            "core_hash": core_hash(),
            "method": method,
            "plugin": bundled,
            "protocol": {**asdict(protocol), "id": protocol.protocol_id()},
            "quick": protocol.quick,
            "datasets": info,
            "selections": selections,
            "runs": run_entries,
            "files": {
                str(p.relative_to(tmp)): sha256_file(p)
                for p in sorted(tmp.rglob("*"))
                if p.is_file()
            },
        }
        atomic_write_json(tmp / "manifest.json", manifest)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Submitted(out, bundle_id(manifest), manifest, notes)


def _builtin_name(path: Path) -> str:
    """``methods/erm.py`` for a built-in plugin file, "" otherwise."""
    from benchmark.plugins import KINDS, builtin_dir
    from benchmark.sources import TRACKS_DIR

    for kind in KINDS:
        folder = builtin_dir(kind)
        if folder is not None and path.parent == folder.resolve():
            return f"{kind}/{path.name}"
    if path.parent == TRACKS_DIR.resolve():  # a track module of this bench
        return f"tracks/{path.name}"
    return ""


def bundle_id(manifest: Mapping[str, Any]) -> str:
    return content_id(dict(manifest), 16)


# -- verify -----------------------------------------------------------------------------------
#: verification levels, weakest first. ``local``: a row built from your own records (``bench
#: leaderboard build``); ``predictions``: a bundle's metrics recomputed from its stored
#: predictions; ``reinferred``: also, the bundled checkpoint, rebuilt with the bundled plugin in
#: a separate process, predicts the stored predictions; ``retrained``: also, training the
#: protocol's seeds again from the bundled plugin gives the recorded metrics.
LEVELS = _LEVELS
#: the weakest level the official leaderboard accepts
OFFICIAL_LEVEL = "reinferred"
#: re-inferred outputs vs stored ones (``torch.allclose``): same device kind, other kinds
PREDICTION_TOLERANCE = {"same": (1e-4, 1e-4), "cross": (5e-2, 5e-2)}  # (rtol, atol)
#: retrained metrics vs recorded ones on another device kind (or on GPUs): the seed mean may
#: differ by RETRAIN_FLOOR * max(1, |mean|) plus RETRAIN_SE standard errors of the difference
RETRAIN_FLOOR = 0.01
RETRAIN_SE = 2.0
_RUN_ID = re.compile(r"[0-9a-f]{8,64}")


def official_dir() -> Path | None:
    """``results/leaderboard`` of the checkout this bench runs from (None for a wheel)."""
    root = Path(benchmark.__file__).resolve().parent.parent
    if not (root / "pyproject.toml").is_file():
        return None
    return root / "results" / "leaderboard"


def is_official(target: str | Path) -> bool:
    """Whether ``target`` (a folder or CSV) is, or lies in, the official leaderboard folder."""
    folder = official_dir()
    if folder is None:
        return False
    resolved = Path(target).resolve()
    return resolved == folder.resolve() or resolved.is_relative_to(folder.resolve())


@dataclass
class Verified:
    bundle_id: str
    method: str
    quick: bool
    checks: list[str]
    unverified: list[str]
    rows: dict[str, dict[str, str]]
    written: dict[str, Path]
    level: str = "predictions"


def _load_manifest(path: Path) -> dict[str, Any]:
    mpath = path / "manifest.json"
    if not mpath.is_file():
        raise Rejected(f"{path} is not a submission bundle (no manifest.json)")
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise Rejected(f"manifest.json is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("kind") != "bench-submission":
        raise Rejected("manifest.json is not a bench submission manifest")
    if manifest.get("bundle_schema") != BUNDLE_SCHEMA:
        raise Rejected(
            f"bundle schema {manifest.get('bundle_schema')!r}; this bench reads {BUNDLE_SCHEMA}"
        )
    for key in ("method", "plugin", "protocol", "datasets", "runs", "files"):
        if key not in manifest:
            raise Rejected(f"manifest.json lacks {key!r}")
    if not isinstance(manifest["files"], dict) or not isinstance(manifest["runs"], list):
        raise Rejected("manifest.json: 'files' must map paths to sha256, 'runs' be a list")
    return manifest


def safe_relpath(rel: Any, what: str = "path") -> str:
    """``rel`` if it is a plain relative path inside the bundle; ``Rejected`` otherwise
    (absolute, ``..``, empty parts, backslashes or control characters)."""
    if not isinstance(rel, str) or not rel:
        raise Rejected(f"manifest {what} {rel!r} is not a relative path")
    parts = rel.split("/")
    if (
        rel.startswith("/")
        or Path(rel).is_absolute()
        or any(p in ("", ".", "..") for p in parts)
        or "\\" in rel
        or any(ord(c) < 32 for c in rel)
    ):
        raise Rejected(f"manifest {what} {rel!r} leaves the bundle (absolute path or '..')")
    return rel


def _symlinks(path: Path) -> list[str]:
    out = []
    for root, dirs, files in os.walk(path, followlinks=False):
        for name in [*dirs, *files]:
            if (Path(root) / name).is_symlink():
                out.append(str((Path(root) / name).relative_to(path)))
    return sorted(out)


def check_files(path: Path, manifest: Mapping[str, Any]) -> int:
    """Every file listed with its sha256, and no file that is not listed; every listed path
    stays inside the bundle, and the bundle holds no symbolic link."""
    listed: dict[str, str] = manifest["files"]
    for rel in listed:
        safe_relpath(rel, "file")
    links = _symlinks(path)
    if links:
        raise Rejected(f"the bundle holds symbolic link(s), refused: {', '.join(links)}")
    present = {
        str(p.relative_to(path))
        for p in path.rglob("*")
        if p.is_file() and p != path / "manifest.json"
    }
    extra = sorted(present - set(listed))
    if extra:
        raise Rejected(f"file(s) not listed in the manifest: {', '.join(extra)}")
    for rel, digest in sorted(listed.items()):
        file = path / rel
        if not file.is_file():
            raise Rejected(f"{rel} is listed in the manifest but missing")
        if sha256_file(file) != digest:
            raise Rejected(f"{rel} was changed after the bundle was written (sha256 mismatch)")
    return len(listed)


def _listed(manifest: Mapping[str, Any], rel: Any, what: str) -> str:
    """A manifest reference that must be one of the hashed files."""
    rel = safe_relpath(rel, what)
    if rel not in manifest["files"]:
        raise Rejected(f"manifest {what} {rel!r} is not among the bundle's hashed files")
    return rel


def expected_method_hash(path: Path, manifest: Mapping[str, Any]) -> str:
    """``source_hash`` of the submitted method, from the bundled (and built-in) sources."""
    from benchmark.plugins import builtin_dir
    from benchmark.sources import TRACKS_DIR

    h = hashlib.sha256()
    for entry in manifest["plugin"]:
        if entry.get("builtin"):
            kind, _, name = str(entry["builtin"]).partition("/")
            if kind == "tracks":
                folder = TRACKS_DIR
            else:
                folder = builtin_dir(kind) if kind in ("methods", "datasets", "metrics") else None
            local = folder / safe_relpath(name, "built-in") if folder else None
            if local is None or not local.is_file():
                raise Rejected(f"the plugin builds on built-in {entry['builtin']}, absent here")
            if sha256_file(local) != entry["sha256"]:
                raise Rejected(
                    f"the plugin builds on {entry['builtin']}, which differs from this bench's "
                    f"copy (submitted with another version of it)"
                )
        else:
            rel = _listed(manifest, entry.get("file"), "plugin file")
            if sha256_file(path / rel) != entry["sha256"]:
                raise Rejected(f"{rel} does not match its hash in the manifest")
        h.update(entry["sha256"].encode())
    return h.hexdigest()[:16]


def recompute(
    record: RunRecord, outputs: Mapping[str, Any], bundle: Any, runner: Any
) -> tuple[dict[str, dict[str, float]], dict[str, Any], list[str]]:
    """Every metric of ``record`` recomputed from stored outputs; mismatches raise.

    Returns the recomputed metrics and details, and the metric keys that cannot be recomputed
    from predictions (metrics that query the trained model)."""
    splits = list(record.metrics)
    for split in splits:
        needed = [split]
        pair = bundle.splits[split].pair_with if split in bundle.splits else None
        if pair:
            needed.append(pair)
        for name in needed:
            if name not in bundle.splits:
                raise Rejected(f"run {record.run_id}: the dataset has no split {name!r}")
            if name not in outputs:
                raise Rejected(f"run {record.run_id}: no stored predictions for split {name!r}")
            n = len(bundle.splits[name])
            for key, tensor in outputs[name].tensors().items():
                if len(tensor) != n:
                    raise Rejected(
                        f"run {record.run_id}: stored {key} on {name} has {len(tensor)} rows, "
                        f"the split has {n} samples"
                    )

    def predict(name: str) -> Any:
        return outputs[name]

    try:
        metrics, details, _ = runner.score(bundle, predict, splits)
    except BenchError:
        raise
    except Exception as exc:
        raise Rejected(
            f"run {record.run_id}: metrics cannot be computed from the stored "
            f"predictions ({type(exc).__name__}: {exc})"
        ) from exc
    unverified = []
    for split, values in record.metrics.items():
        for key, claimed in values.items():
            if key not in metrics.get(split, {}):
                unverified.append(f"{key}@{split}" if split != "test" else key)
                continue
            actual = metrics[split][key]
            both_nan = math.isnan(claimed) and math.isnan(actual)
            if not both_nan and not (abs(claimed - actual) <= TOLERANCE):
                raise Rejected(
                    f"run {record.run_id} ({record.dataset}, seed {record.seed}): {key} on "
                    f"{split} is {claimed!r} in the record but {actual!r} recomputed from the "
                    f"stored predictions"
                )
    return metrics, details, unverified


# -- re-inference and retraining (a separate process runs the bundled plugin) ----------------
def device_kind(device: Any) -> str:
    """``cpu`` or ``cuda`` (or another torch device type) of a device or its text."""
    return str(device).split(":", 1)[0]


def _worker(
    modes: Sequence[str],
    path: Path,
    manifest: Mapping[str, Any],
    records: Sequence[RunRecord],
    device: Any,
    data_root: str | Path | None,
    out: Path,
) -> dict[str, Any]:
    """Run ``benchmark.cli.verify_worker`` (which imports the bundled plugin) on ``records``
    for ``modes`` (``rerun``, ``retrain``); returns its ``defaults.json``. A failure of the
    bundle's code is ``Rejected``."""
    import subprocess
    import sys

    plugins = [
        str((path / _listed(manifest, e.get("file"), "plugin file")).resolve())
        for e in manifest["plugin"]
        if not e.get("builtin")
    ]
    runs = []
    entries = {str(e.get("run_id")): e for e in manifest["runs"]}
    for r in records:
        item: dict[str, Any] = {"run_id": r.run_id}
        if "rerun" in modes:
            rel = entries[r.run_id].get("checkpoint")
            if not rel:
                raise Rejected(
                    f"run {r.run_id}: the bundle carries no checkpoint, so it cannot be "
                    f"re-inferred (submit it again with this bench)"
                )
            rel = _listed(manifest, rel, "checkpoint")
            if rel != f"checkpoints/{r.checkpoint}.pt":
                raise Rejected(f"run {r.run_id}: its checkpoint entry is not the one it records")
            item["checkpoint"] = rel
        runs.append(item)
    spec = {
        "bundle": str(path.resolve()),
        "plugins": plugins,
        "modes": list(modes),
        "device": str(device),
        "data_root": str(data_root) if data_root else None,
        "runs": runs,
        "registered": {d: OFFICIAL.settings_for(d) for d in {r.dataset for r in records}},
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "spec.json").write_text(json.dumps(spec))
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmark.cli.verify_worker", str(out / "spec.json"), str(out)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        why = lines[-1] if lines else f"exit code {proc.returncode}"
        raise Rejected(f"the bundled plugin failed to {' and '.join(modes)}: {why}")
    return json.loads((out / "defaults.json").read_text())


def match_predictions(
    record: RunRecord, stored: Mapping[str, Any], fresh: Mapping[str, Any], same_kind: bool
) -> None:
    """Stored outputs must equal the re-inferred ones: every tensor of every split, within
    ``PREDICTION_TOLERANCE`` (``same`` when both ran on one device kind, else ``cross``);
    integer and boolean tensors exactly."""
    import torch

    rtol, atol = PREDICTION_TOLERANCE["same" if same_kind else "cross"]
    if set(stored) != set(fresh):
        raise Rejected(
            f"run {record.run_id}: stored predictions for splits {sorted(stored)}, the run "
            f"evaluates {sorted(fresh)}"
        )
    for split, out in fresh.items():
        mine, theirs = out.tensors(), stored[split].tensors()
        if set(mine) != set(theirs):
            raise Rejected(
                f"run {record.run_id}: stored outputs on {split} are {sorted(theirs)}, the "
                f"bundled checkpoint outputs {sorted(mine)}"
            )
        for key, value in mine.items():
            other = theirs[key]
            same_shape = value.shape == other.shape
            if same_shape and value.is_floating_point():
                ok = torch.allclose(
                    other.float(), value.float(), rtol=rtol, atol=atol, equal_nan=True
                )
            else:
                ok = same_shape and torch.equal(other, value)
            if not ok:
                what = f"{key} on {split}"
                if key == "logits" and same_shape and value.ndim == 2:
                    flips = int((value.argmax(1) != other.argmax(1)).sum())
                    what += f" ({flips} of {len(value)} predicted classes differ)"
                raise Rejected(
                    f"run {record.run_id} ({record.dataset}, seed {record.seed}): the stored "
                    f"{what} are not what the bundled checkpoint predicts"
                )


def match_retrained(
    records: Sequence[RunRecord], fresh: Mapping[str, Mapping[str, Any]], exact: bool
) -> None:
    """Retrained metrics vs recorded ones (the metrics the rows carry).

    ``exact`` (both on the CPU): every run's every metric within ``TOLERANCE``. Otherwise the
    seed mean of each metric: |retrained - recorded| <= RETRAIN_FLOOR * max(1, |recorded|) +
    RETRAIN_SE * sqrt((s_retrained^2 + s_recorded^2) / n), s the seeds' standard deviations."""
    import statistics

    pairs: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for r in records:
        new = fresh[r.run_id]
        for split, values in r.metrics.items():
            for key, claimed in values.items():
                if key not in new.get(split, {}):
                    continue
                actual = float(new[split][key])
                pairs.setdefault((split, key), []).append((float(claimed), actual))
                if exact and not (
                    (math.isnan(claimed) and math.isnan(actual))
                    or abs(claimed - actual) <= TOLERANCE
                ):
                    raise Rejected(
                        f"run {r.run_id} ({r.dataset}, seed {r.seed}): {key} on {split} is "
                        f"{claimed!r} in the record but {actual!r} when trained again from the "
                        f"bundled plugin"
                    )
    if exact:
        return
    for (split, key), vals in sorted(pairs.items()):
        claimed = [c for c, _ in vals if not math.isnan(c)]
        actual = [a for _, a in vals if not math.isnan(a)]
        if len(claimed) != len(actual):
            raise Rejected(f"{key} on {split}: NaN in the record or the retrained runs only")
        if not claimed:
            continue
        n = len(claimed)
        spread = (statistics.variance(claimed) + statistics.variance(actual)) if n > 1 else 0.0
        mc, ma = statistics.fmean(claimed), statistics.fmean(actual)
        bound = RETRAIN_FLOOR * max(1.0, abs(mc)) + RETRAIN_SE * math.sqrt(spread / n)
        if abs(mc - ma) > bound:
            raise Rejected(
                f"{records[0].dataset}: {key} on {split} is {mc:.4f} (mean of {n} seeds) in "
                f"the records but {ma:.4f} when trained again from the bundled plugin "
                f"(allowed difference {bound:.4f})"
            )


# -- the official leaderboard ----------------------------------------------------------------
def check_official_protocol(manifest: Mapping[str, Any]) -> None:
    """The bundle's stated protocol must be the registered one (``OFFICIAL``)."""
    protocol = manifest["protocol"]
    if manifest.get("quick") or protocol.get("quick"):
        raise Rejected("a quick bundle never enters the official leaderboard")
    for key in ("name", "seeds", "select", "random", "search"):
        if protocol.get(key) != getattr(OFFICIAL, key):
            raise Rejected(
                f"the bundle's protocol has {key} = {protocol.get(key)!r}; the official "
                f"leaderboard's registered protocol {OFFICIAL.name} has "
                f"{getattr(OFFICIAL, key)!r}"
            )
    for dataset in manifest["datasets"]:
        given = [
            *protocol.get("settings", {}).get("*", []),
            *protocol.get("settings", {}).get(dataset, []),
        ]
        expected = [*OFFICIAL.settings.get("*", []), *OFFICIAL.settings.get(dataset, [])]
        if sorted(map(str, given)) != sorted(expected):
            raise Rejected(
                f"the bundle's protocol sets {given} on {dataset}; the official leaderboard's "
                f"registered protocol {OFFICIAL.name} sets {expected}"
            )


def check_official_runs(records: Sequence[RunRecord], registered: Mapping[str, Any]) -> None:
    """The runs themselves (not the bundle's text) must follow the registered protocol: its
    seeds, and the dataset options and hyperparameters its settings resolve to for the plugin
    (``registered``: ``hparams`` and ``options``, from the worker)."""
    dataset_defaults = registered["options"]
    defaults = registered["hparams"]
    seeds = sorted(r.seed for r in records)
    if seeds != sorted(OFFICIAL.seeds):
        raise Rejected(
            f"{records[0].dataset}: runs for seeds {seeds}, the official protocol requires "
            f"{OFFICIAL.seeds}"
        )
    for r in records:
        if r.dataset_options != json.loads(json.dumps(dict(dataset_defaults))):
            raise Rejected(
                f"run {r.run_id}: dataset options {json.dumps(r.dataset_options)} are not "
                f"{json.dumps(dict(dataset_defaults))}, the official protocol's "
                f"({OFFICIAL.name})"
            )
        expected = json.loads(json.dumps(defaults))
        differ = sorted(
            k for k in set(r.hparams) | set(expected) if r.hparams.get(k) != expected.get(k)
        )
        if differ:
            k = differ[0]
            raise Rejected(
                f"run {r.run_id}: {k} = {r.hparams.get(k)!r}, the official protocol "
                f"({OFFICIAL.name}) gives {expected.get(k)!r} ({len(differ)} setting(s) differ)"
            )


def _row_settings(
    record: RunRecord, defaults: Mapping[str, Any] | None, ds_defaults: Any
) -> dict[str, str]:
    """The ``--set`` pairs of a verified row, from its records: relative to the plugin's
    defaults when the worker reported them, else every hyperparameter."""
    from benchmark.leaderboard import explicit_settings

    if defaults is None:
        return explicit_settings(record)
    expected = json.loads(json.dumps(defaults))  # as the record holds them (lists, not tuples)
    options = json.loads(json.dumps(dict(ds_defaults)))
    out = {k: fmt_value(v) for k, v in record.hparams.items() if expected.get(k, object()) != v}
    for k, v in record.dataset_options.items():
        if options.get(k, object()) != v:
            out[f"dataset.{k}"] = fmt_value(v)
    return out


def verify(
    path: str | Path,
    *,
    leaderboard: str | Path | None = None,
    data_root: str | Path | None = None,
    device: Any = None,
    write: bool = True,
    level: str = "predictions",
    official: bool | None = None,
) -> Verified:
    """Check a bundle; append its rows to ``leaderboard`` (a folder of per-dataset CSVs, or
    one CSV) unless it is a quick bundle. Raises ``Rejected`` with the reason.

    ``level``: ``predictions`` (metrics recomputed from the stored predictions),
    ``reinferred`` (also: the bundled checkpoint predicts them; RUNS THE BUNDLED PLUGIN in a
    subprocess) or ``retrained`` (also: training again gives the recorded metrics; runs it too).
    ``official``: check against the registered protocol and require ``reinferred`` or better;
    None: when ``leaderboard`` is the checkout's ``results/leaderboard``.
    """
    from benchmark.device import select_device
    from benchmark.hparams import resolve
    from benchmark.leaderboard import append_rows, build_row
    from benchmark.runner import Runner

    if level not in LEVELS[1:]:
        raise BenchError(f"verification level {level!r}; choose one of {', '.join(LEVELS[1:])}")
    path = Path(path)
    manifest = _load_manifest(path)
    checks = []
    n_files = check_files(path, manifest)
    checks.append(f"{n_files} files match their sha256 in the manifest")
    protocol = manifest["protocol"]
    if not isinstance(protocol, dict):
        raise Rejected("manifest.json: 'protocol' is not a table")
    quick = bool(manifest.get("quick") or protocol.get("quick")) or _looks_quick(manifest)
    if official is None:
        official = leaderboard is not None and write and is_official(leaderboard)
    official = official and not quick  # a quick bundle is verified but never written
    if official and LEVELS.index(level) < LEVELS.index(OFFICIAL_LEVEL):
        raise Rejected(
            f"the official leaderboard accepts rows verified at level {OFFICIAL_LEVEL} or "
            f"better; add --rerun (it runs the bundle's code in a separate process)"
        )
    method = manifest["method"]
    if manifest.get("bench_version") != benchmark.__version__:
        raise Rejected(
            f"made with bench {manifest.get('bench_version')}, this is bench "
            f"{benchmark.__version__}; resubmit with this version"
        )
    if official:
        check_official_protocol(manifest)
    method_hash = expected_method_hash(path, manifest)
    checks.append(f"plugin sources hash to {method_hash}")
    if manifest.get("core_hash") != core_hash():
        checks.append(
            f"note: trained with core code {manifest.get('core_hash')}, this bench has "
            f"{core_hash()} (same version {benchmark.__version__}; metrics are recomputed here)"
        )
    device = device or select_device("cpu")
    runner = Runner(Store(tempfile.mkdtemp(prefix="bench-verify-")), device, data_root, False)
    by_dataset: dict[str, list[RunRecord]] = {}
    unverified: set[str] = set()
    for entry in manifest["runs"]:
        run_id = str(entry.get("run_id", "")) if isinstance(entry, dict) else ""
        if not _RUN_ID.fullmatch(run_id):
            raise Rejected(f"manifest run id {run_id!r} is not a run id")
        rpath = path / _listed(manifest, f"runs/{run_id}.json", "run record")
        try:
            record = RunRecord.from_dict(json.loads(rpath.read_text()))
        except (OSError, json.JSONDecodeError, ValueError, TypeError) as exc:
            raise Rejected(f"run record {run_id}: unreadable ({exc})") from exc
        if record.run_id != run_id or record.expected_id() != run_id:
            raise Rejected(
                f"run {run_id}: its id does not match its content (method, data, "
                f"hyperparameters, seed or code were edited)"
            )
        if record.method != method:
            raise Rejected(f"run {run_id} is a run of {record.method}, not of {method}")
        parts = {k: v for k, v in record.code.items() if k not in ("hash", "bench", "git")}
        if content_id(parts) != record.code.get("hash"):
            raise Rejected(f"run {run_id}: its code hashes do not add up to its code hash")
        if record.code.get(f"method:{method}") != method_hash:
            raise Rejected(
                f"run {run_id} was made by other code than the bundled plugin "
                f"({record.code.get(f'method:{method}')} vs {method_hash})"
            )
        ds = manifest["datasets"].get(record.dataset)
        if ds is None:
            raise Rejected(f"run {run_id} is on {record.dataset}, not listed in the manifest")
        if record.dataset_fingerprint != ds["fingerprint"]:
            raise Rejected(f"run {run_id}: dataset fingerprint differs from the manifest's")
        by_dataset.setdefault(record.dataset, []).append(record)
    recomputed_runs: dict[str, list[RunRecord]] = {}
    stored: dict[str, dict[str, Any]] = {}
    for dataset, records in sorted(by_dataset.items()):
        ds = manifest["datasets"][dataset]
        if dataset not in DATASETS:
            raise Rejected(f"dataset {dataset} is not installed here; cannot verify")
        bundle = runner.bundle(dataset, ds["options"])
        if bundle.fingerprint != ds["fingerprint"]:
            raise Rejected(
                f"{dataset} rebuilt here has fingerprint {bundle.fingerprint}, the bundle's runs "
                f"used {ds['fingerprint']} (other data or options)"
            )
        seeds = sorted(r.seed for r in records)
        if seeds != sorted(protocol["seeds"]):
            raise Rejected(
                f"{dataset}: runs for seeds {seeds}, the protocol requires {protocol['seeds']}"
            )
        if len({json.dumps(r.hparams, sort_keys=True) for r in records}) != 1:
            raise Rejected(f"{dataset}: the seeds were run with different hyperparameters")
        fixed = []
        for record in records:
            ppath = path / _listed(manifest, f"predictions/{record.run_id}.pt", "predictions")
            outputs = Store(path).load_predictions(ppath)
            stored[record.run_id] = outputs
            metrics, details, missing = recompute(record, outputs, bundle, runner)
            unverified |= set(missing)
            clean = RunRecord.from_dict(record.to_dict())
            clean.metrics, clean.details = metrics, details  # rows use recomputed numbers only
            fixed.append(clean)
        recomputed_runs[dataset] = fixed
        checks.append(
            f"{dataset}: fingerprint {bundle.fingerprint} rebuilt; {len(records)} runs' metrics "
            f"recomputed from their predictions"
        )
    all_records = [r for rs in by_dataset.values() for r in rs]
    dataset_defaults = {d: resolve(DATASETS.get(d).options, {}, what=d) for d in by_dataset}
    defaults: dict[str, Any] | None = None
    if LEVELS.index(level) >= LEVELS.index("reinferred"):
        modes = ["rerun", "retrain"] if level == "retrained" else ["rerun"]
        with tempfile.TemporaryDirectory(prefix="bench-verify-worker-") as tmp:
            out = Path(tmp)
            defaults = _worker(modes, path, manifest, all_records, device, data_root, out)
            for r in all_records:
                fresh = Store(out).load_predictions(out / f"{r.run_id}.pt")
                same = device_kind(r.environment.get("device", "")) == device_kind(device)
                match_predictions(r, stored[r.run_id], fresh, same)
            checks.append(
                f"{len(all_records)} runs re-inferred from the bundled checkpoints with the "
                f"bundled plugin (separate process on {device}): the stored predictions match"
            )
            if official:
                for dataset, records in sorted(by_dataset.items()):
                    check_official_runs(records, defaults[dataset]["registered"])
                checks.append(f"the runs follow the registered protocol {OFFICIAL.name}")
            if level == "retrained":
                for dataset, records in sorted(by_dataset.items()):
                    retrained = {
                        r.run_id: json.loads((out / f"{r.run_id}.json").read_text())
                        for r in records
                    }
                    for r in records:  # same code and configuration: the same run id
                        same_code = r.code.get("core") == core_hash()
                        if same_code and retrained[r.run_id]["run_id"] != r.run_id:
                            raise Rejected(
                                f"run {r.run_id}: trained again from its own hyperparameters "
                                f"and data options it is run {retrained[r.run_id]['run_id']}"
                            )
                    fresh_metrics = {k: v["metrics"] for k, v in retrained.items()}
                    exact = device_kind(device) == "cpu" and all(
                        device_kind(r.environment.get("device", "")) == "cpu" for r in records
                    )
                    match_retrained(recomputed_runs[dataset], fresh_metrics, exact)
                    checks.append(
                        f"{dataset}: {len(records)} seeds trained again from the bundled plugin; "
                        f"metrics match ({'each run exactly' if exact else 'seed means'})"
                    )
    quick_seeds = set(quick_protocol([]).seeds)
    if (
        not quick
        and {r.seed for r in all_records} <= quick_seeds
        and any(_ran_quick(r) for r in all_records)
    ):
        quick = True  # whatever the manifest says: what the runs used is what counts
        checks.append("the runs used the quick protocol's seeds, tiny data and settings")
    bid = bundle_id(manifest)
    rows = {}
    for dataset, records in recomputed_runs.items():
        first = min(records, key=lambda r: r.seed)
        plugin_files = [e["file"] for e in manifest["plugin"] if not e.get("builtin")]
        rows[dataset] = build_row(
            sorted(records, key=lambda r: r.seed),
            selection=protocol.get("select") or "none",
            source=f"verified {protocol['name']} bundle {bid}",
            settings=_row_settings(
                first,
                defaults[dataset]["hparams"] if defaults is not None else None,
                dataset_defaults[dataset],
            ),
            plugin=str(path / plugin_files[0]) if plugin_files else None,
            verification=level,
        )
    written: dict[str, Path] = {}
    if quick:
        checks.append("quick bundle: verified, but quick results never enter a leaderboard")
    elif write and leaderboard is not None:
        target = Path(leaderboard)
        for dataset, row in rows.items():
            csv = target if target.suffix == ".csv" else target / f"{dataset}.csv"
            written[dataset] = append_rows(csv, [row])
    return Verified(bid, method, quick, checks, sorted(unverified), rows, written, level)


def _ran_quick(record: RunRecord) -> bool:
    """A run made under the quick protocol, read from what it used (its dataset options hold
    the dataset's tiny options and its hyperparameters the tiny ones), not from any label."""
    tiny = DATASETS.get(record.dataset).tiny if record.dataset in DATASETS else {}
    options, hparams = record.dataset_options, record.hparams
    return all(options.get(k) == v for k, v in tiny.items()) and all(
        hparams.get(k) == v for k, v in TINY_HP.items()
    )


def _looks_quick(manifest: Mapping[str, Any]) -> bool:
    """A bundle whose protocol is the quick one under another flag (relabelled)."""
    protocol = manifest["protocol"]
    datasets = [d for d in manifest["datasets"] if d in DATASETS]
    if protocol.get("name") == "quick":
        return True
    if not datasets:
        return False
    quick = quick_protocol(datasets)
    return all(
        sorted(protocol.get("settings", {}).get(d, [])) == sorted(quick.settings[d])
        for d in datasets
    )
