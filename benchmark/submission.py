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
from benchmark.io import atomic_write_json
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
        run_entries = []
        for r in runs:
            shutil.copyfile(store.path(r.run_id), tmp / "runs" / f"{r.run_id}.json")
            shutil.copyfile(
                store.predictions_path(r.run_id), tmp / "predictions" / f"{r.run_id}.pt"
            )
            run_entries.append({"run_id": r.run_id, "dataset": r.dataset, "seed": r.seed})
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
@dataclass
class Verified:
    bundle_id: str
    method: str
    quick: bool
    checks: list[str]
    unverified: list[str]
    rows: dict[str, dict[str, str]]
    written: dict[str, Path]


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
    return manifest


def check_files(path: Path, manifest: Mapping[str, Any]) -> int:
    """Every file listed with its sha256, and no file that is not listed."""
    listed: dict[str, str] = manifest["files"]
    present = {
        str(p.relative_to(path))
        for p in path.rglob("*")
        if p.is_file() and p.name != "manifest.json"
    }
    extra = sorted(present - set(listed))
    if extra:
        raise Rejected(f"file(s) not listed in the manifest: {', '.join(extra)}")
    for rel, digest in sorted(listed.items()):
        file = path / rel
        if ".." in Path(rel).parts or not file.is_file():
            raise Rejected(f"{rel} is listed in the manifest but missing")
        if sha256_file(file) != digest:
            raise Rejected(f"{rel} was changed after the bundle was written (sha256 mismatch)")
    return len(listed)


def expected_method_hash(path: Path, manifest: Mapping[str, Any]) -> str:
    """``source_hash`` of the submitted method, from the bundled (and built-in) sources."""
    from benchmark.plugins import builtin_dir
    from benchmark.sources import TRACKS_DIR

    h = hashlib.sha256()
    for entry in manifest["plugin"]:
        if entry.get("builtin"):
            kind, name = entry["builtin"].split("/", 1)
            folder = TRACKS_DIR if kind == "tracks" else builtin_dir(kind)
            local = folder / name if folder else None
            if local is None or not local.is_file():
                raise Rejected(f"the plugin builds on built-in {entry['builtin']}, absent here")
            if sha256_file(local) != entry["sha256"]:
                raise Rejected(
                    f"the plugin builds on {entry['builtin']}, which differs from this bench's "
                    f"copy (submitted with another version of it)"
                )
        else:
            if sha256_file(path / entry["file"]) != entry["sha256"]:
                raise Rejected(f"{entry['file']} does not match its hash in the manifest")
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


def verify(
    path: str | Path,
    *,
    leaderboard: str | Path | None = None,
    data_root: str | Path | None = None,
    device: Any = None,
    write: bool = True,
) -> Verified:
    """Check a bundle; append its rows to ``leaderboard`` (a folder of per-dataset CSVs, or
    one CSV) unless it is a quick bundle. Raises ``Rejected`` with the reason."""
    from benchmark.device import select_device
    from benchmark.leaderboard import append_rows, build_row
    from benchmark.runner import Runner

    path = Path(path)
    manifest = _load_manifest(path)
    checks = []
    n_files = check_files(path, manifest)
    checks.append(f"{n_files} files match their sha256 in the manifest")
    method = manifest["method"]
    if manifest.get("bench_version") != benchmark.__version__:
        raise Rejected(
            f"made with bench {manifest.get('bench_version')}, this is bench "
            f"{benchmark.__version__}; resubmit with this version"
        )
    method_hash = expected_method_hash(path, manifest)
    checks.append(f"plugin sources hash to {method_hash}")
    if manifest.get("core_hash") != core_hash():
        checks.append(
            f"note: trained with core code {manifest.get('core_hash')}, this bench has "
            f"{core_hash()} (same version {benchmark.__version__}; metrics are recomputed here)"
        )
    device = device or select_device("cpu")
    runner = Runner(Store(tempfile.mkdtemp(prefix="bench-verify-")), device, data_root, False)
    protocol = manifest["protocol"]
    by_dataset: dict[str, list[RunRecord]] = {}
    unverified: set[str] = set()
    for entry in manifest["runs"]:
        run_id = str(entry.get("run_id", ""))
        rpath = path / "runs" / f"{run_id}.json"
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
            outputs = Store(path).load_predictions(path / "predictions" / f"{record.run_id}.pt")
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
    bid = bundle_id(manifest)
    rows = {}
    for dataset, records in recomputed_runs.items():
        rows[dataset] = build_row(
            sorted(records, key=lambda r: r.seed),
            selection=protocol.get("select") or "none",
            source=f"verified {protocol['name']} bundle {bid}",
            settings=manifest["datasets"][dataset]["settings"],
            plugin=str(path / manifest["plugin"][0].get("file", "")),
        )
    written: dict[str, Path] = {}
    if manifest.get("quick") or protocol.get("quick"):
        checks.append("quick bundle: verified, but quick results never enter a leaderboard")
    elif write and leaderboard is not None:
        target = Path(leaderboard)
        for dataset, row in rows.items():
            csv = target if target.suffix == ".csv" else target / f"{dataset}.csv"
            written[dataset] = append_rows(csv, [row])
    return Verified(
        bid, method, bool(manifest.get("quick")), checks, sorted(unverified), rows, written
    )
