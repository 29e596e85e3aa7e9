"""Leaderboard CSVs: one per dataset, built from run records, checked on every read.

A row is one (method, hyperparameters, dataset fingerprint, code) over its seeds: mean and
standard deviation (ddof 1) per metric, the seeds, the versions that produced it, the command
that reproduces it, and ``row_hash``, the hash of every other cell, so that an edited number is
caught (``bench compare``, ``bench verify`` and ``bench report`` refuse such a file).

Cells that a spreadsheet would run as a formula (starting with ``= + - @``, tab or CR, and not
a number) are written with a leading ``'`` (OWASP's CSV-injection advice) and read back without.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import statistics
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark.errors import BenchError
from benchmark.io import atomic_write_text
from benchmark.record import SCHEMA_VERSION, RunRecord, canonical_json, content_id
from benchmark.sweep import Job, fmt_value, reproduce_command
from benchmark.tables import metric_order

try:
    import fcntl
except ImportError:  # not POSIX
    fcntl = None  # type: ignore[assignment]

#: version of the CSV layout; a file of another version is refused, never guessed at
LEADERBOARD_SCHEMA = 1

#: leading columns, in order; metric columns (``<key>_mean``, ``<key>_std``) follow, then TAIL
HEAD = (
    "schema_version",
    "record_schema",
    "bench_version",
    "dataset",
    "dataset_version",
    "dataset_fingerprint",
    "dataset_options",
    "track",
    "method",
    "hparams",
    "settings",
    "selection",
    "seeds",
    "n",
)
TAIL = (
    "code_hash",
    "core_hash",
    "metrics_hash",
    "git",
    "date",
    "source",
    "verification",
    "run_ids",
    "reproduce",
    "row_hash",
)
#: columns every leaderboard CSV has; ``verification`` came later: a file without it is read
#: with every row at level ``local`` (the row_hash skips empty cells, so it still checks)
REQUIRED = tuple(c for c in (*HEAD, *TAIL) if c != "verification")
#: verification levels of a row, weakest first (see ``benchmark.submission.LEVELS``)
LEVELS = ("local", "predictions", "reinferred", "retrained")
_FORMULA = ("=", "+", "-", "@", "\t", "\r", "'")


# -- CSV cells ------------------------------------------------------------------------------
def _is_number(text: str) -> bool:
    """A finite number (the writer leaves an undefined value empty, never ``nan``/``inf``)."""
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


#: cells that hold a JSON object (read back with ``json.loads`` by compare and the report)
_JSON_OBJECTS = ("dataset_options", "hparams", "settings")


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def neutralise(cell: str) -> str:
    """Prefix ``'`` to a text cell a spreadsheet would read as a formula (numbers stay)."""
    if cell and cell.startswith(_FORMULA) and not _is_number(cell):
        return "'" + cell
    return cell


def unneutralise(cell: str) -> str:
    return cell[1:] if cell.startswith("'") and not _is_number(cell) else cell


def to_csv(rows: Sequence[Mapping[str, str]], columns: Sequence[str]) -> str:
    """Rows as CSV text with formula injection neutralised."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([neutralise(str(row.get(c, ""))) for c in columns])
    return buf.getvalue()


def number(value: float | None) -> str:
    """A float as exact text; NaN / missing as the empty cell."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return repr(float(value))


def row_hash(row: Mapping[str, str]) -> str:
    return content_id({k: v for k, v in row.items() if k != "row_hash" and v != ""}, 24)


# -- building rows from records ---------------------------------------------------------------
def metric_keys(records: Iterable[RunRecord]) -> list[str]:
    """Flat metric keys of the leaderboard: every split but the selection-only extra splits."""
    keys: list[str] = []
    for r in records:
        keys += list(leaderboard_metrics(r))
    return metric_order(keys)


def leaderboard_metrics(record: RunRecord) -> dict[str, float]:
    extra = set(record.extra_splits)
    out = {}
    for split, values in record.metrics.items():
        if split in extra:
            continue
        for key, value in values.items():
            out[key if split == "test" else f"{key}@{split}"] = value
    return out


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; NaN for one value). NaN if any is NaN."""
    if not values or any(math.isnan(v) for v in values):
        return float("nan"), float("nan")
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else float("nan")
    return mean, std


def default_settings(record: RunRecord) -> dict[str, str] | None:
    """The ``--set`` pairs that reproduce ``record``'s hyperparameters and dataset options,
    relative to the defaults of the installed method and dataset (None when either is not
    installed here)."""
    from benchmark.dataset import DATASETS
    from benchmark.hparams import resolve
    from benchmark.method import METHODS
    from benchmark.runner import resolve_hparams

    if record.method not in METHODS or record.dataset not in DATASETS:
        return None
    mcls, dcls = METHODS.get(record.method), DATASETS.get(record.dataset)
    defaults = resolve_hparams(mcls, dcls, {})
    options = resolve(dcls.options, {}, what=dcls.name)
    out = {k: fmt_value(v) for k, v in record.hparams.items() if defaults.get(k, object()) != v}
    for k, v in record.dataset_options.items():
        if options.get(k, object()) != v:
            out[f"dataset.{k}"] = fmt_value(v)
    return out


def explicit_settings(record: RunRecord) -> dict[str, str]:
    """Every hyperparameter and dataset option as ``--set`` pairs (always reproduces)."""
    out = {k: fmt_value(v) for k, v in record.hparams.items()}
    out.update({f"dataset.{k}": fmt_value(v) for k, v in record.dataset_options.items()})
    return out


def group_key(r: RunRecord) -> str:
    return canonical_json(
        [r.dataset, r.dataset_fingerprint, r.method, r.hparams, r.code.get("hash", "")]
    )


def group_records(records: Iterable[RunRecord]) -> list[list[RunRecord]]:
    """Records grouped by everything but the seed; one record per seed (a run evaluated with
    and without a selection split has the same test numbers: the first is kept)."""
    groups: dict[str, dict[int, RunRecord]] = {}
    for r in sorted(records, key=lambda r: (len(r.extra_splits) == 0, r.run_id)):
        groups.setdefault(group_key(r), {}).setdefault(r.seed, r)
    return [sorted(g.values(), key=lambda r: r.seed) for g in groups.values()]


def build_row(
    records: Sequence[RunRecord],
    *,
    selection: str = "none",
    source: str = "runs",
    settings: Mapping[str, str] | None = None,
    plugin: str | None = None,
    verification: str = "local",
) -> dict[str, str]:
    """One leaderboard row (all cells as text) from the records of one group.

    ``verification``: how its numbers were checked, one of ``LEVELS`` (``local``: your own
    records, nothing checked beyond them)."""
    if verification not in LEVELS:
        raise BenchError(f"verification level {verification!r} is not one of {LEVELS}")
    first = records[0]
    if settings is None:
        settings = default_settings(first)
        if settings is None:
            settings = explicit_settings(first)
    values: dict[str, list[float]] = {}
    for r in records:
        for key, value in leaderboard_metrics(r).items():
            values.setdefault(key, []).append(float(value))
    row: dict[str, str] = {
        "schema_version": str(LEADERBOARD_SCHEMA),
        "record_schema": str(first.schema),
        "bench_version": first.code.get("bench", ""),
        "dataset": first.dataset,
        "dataset_version": first.dataset_version,
        "dataset_fingerprint": first.dataset_fingerprint,
        "dataset_options": canonical_json(first.dataset_options),
        "track": first.track,
        "method": first.method,
        "hparams": canonical_json(first.hparams),
        "settings": canonical_json(dict(settings)),
        "selection": selection,
        "seeds": " ".join(str(r.seed) for r in records),
        "n": str(len(records)),
    }
    for key in metric_order(values):
        vals = values[key]
        if len(vals) != len(records):  # a metric some seeds lack is not averaged
            continue
        mean, std = mean_std(vals)
        row[f"{key}_mean"] = number(mean)
        row[f"{key}_std"] = number(std)
    row.update(
        {
            "code_hash": first.code.get("hash", ""),
            "core_hash": first.code.get("core", ""),
            "metrics_hash": first.code.get("metrics", ""),
            "git": first.code.get("git", ""),
            "date": max(r.created for r in records)[:10],
            "source": source,
            "verification": verification,
            "run_ids": " ".join(r.run_id for r in records),
            "reproduce": reproduce_command(
                first.method,
                first.dataset,
                [r.seed for r in records],
                settings,
                first.extra_splits,
                plugin,
            ),
        }
    )
    row["row_hash"] = row_hash(row)
    return row


def columns_for(rows: Sequence[Mapping[str, str]]) -> list[str]:
    keys: list[str] = []
    for row in rows:
        keys += [c.removesuffix("_mean") for c in row if c.endswith("_mean")]
    metric_cols = [c for k in metric_order(keys) for c in (f"{k}_mean", f"{k}_std")]
    return [*HEAD, *metric_cols, *TAIL]


# -- reading and checking ---------------------------------------------------------------------
@dataclass
class Leaderboard:
    path: Path
    rows: list[dict[str, str]]
    columns: list[str]

    @property
    def metrics(self) -> list[str]:
        return [c.removesuffix("_mean") for c in self.columns if c.endswith("_mean")]

    def fingerprints(self) -> set[str]:
        return {r["dataset_fingerprint"] for r in self.rows}


def read_leaderboard(path: str | Path) -> Leaderboard:
    """Read and check a leaderboard CSV: layout, schema version, and every row's hash."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"no leaderboard CSV at {path}")
    try:
        text = path.read_text(encoding="utf-8")
        reader = csv.reader(io.StringIO(text))
        header = next(reader, None)
        body = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise BenchError(f"{path}: not a readable CSV ({exc})") from exc
    if not header:
        raise BenchError(f"{path}: empty file, not a leaderboard CSV")
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise BenchError(
            f"{path}: not a bench leaderboard CSV (missing column(s) {', '.join(missing)})"
        )
    rows = []
    for line, cells in enumerate(body, start=2):
        if not cells:
            continue
        if len(cells) != len(header):
            raise BenchError(f"{path}:{line}: {len(cells)} cells, the header has {len(header)}")
        row = {c: unneutralise(v) for c, v in zip(header, cells)}
        if row["schema_version"] != str(LEADERBOARD_SCHEMA):
            raise BenchError(
                f"{path}:{line}: leaderboard schema version {row['schema_version']!r}, but this "
                f"bench reads version {LEADERBOARD_SCHEMA}; rebuild it with `bench leaderboard "
                f"build` (rows of another schema are never compared)"
            )
        if row["record_schema"] != str(SCHEMA_VERSION):
            raise BenchError(
                f"{path}:{line}: row computed from run records of schema "
                f"{row['record_schema']}, this bench writes schema {SCHEMA_VERSION}; rebuild it"
            )
        if row_hash(row) != row["row_hash"]:
            raise BenchError(
                f"{path}:{line}: row of {row['method']} was edited after it was written "
                f"(its row_hash does not match its cells); the file is rejected"
            )
        row.setdefault("verification", "")
        if row["verification"] not in ("", *LEVELS):
            raise BenchError(
                f"{path}:{line}: verification level {row['verification']!r} is not one of "
                f"{', '.join(LEVELS)}"
            )
        for column, cell in row.items():  # numbers where numbers are due, before any use
            numeric = column.endswith(("_mean", "_std")) or column == "n"
            if numeric and cell and not (cell.isdigit() if column == "n" else _is_number(cell)):
                raise BenchError(f"{path}:{line}: {column} is {cell!r}, not a number")
            if column in _JSON_OBJECTS and not _is_json_object(cell):
                raise BenchError(f"{path}:{line}: {column} is {cell[:60]!r}, not a JSON object")
        rows.append(row)
    return Leaderboard(path, rows, list(header))


def level(row: Mapping[str, str]) -> str:
    """A row's verification level (rows written before levels existed are ``local``)."""
    return row.get("verification") or "local"


def write_leaderboard(path: str | Path, rows: Sequence[Mapping[str, str]]) -> Path:
    path = Path(path)
    ordered = sorted(rows, key=lambda r: (r["method"], r["hparams"], r["code_hash"]))
    atomic_write_text(path, to_csv(ordered, columns_for(ordered)))
    return path


# -- build ------------------------------------------------------------------------------------
@dataclass
class BuildResult:
    written: dict[str, Path]
    rows: dict[str, list[dict[str, str]]]  # per dataset: the CSV's rows, kept ones first
    left_out: list[str]
    kept: dict[str, int] = field(default_factory=dict)  # merge: old rows kept per dataset


def current_code() -> dict[str, str]:
    """The core and metric hashes of the code installed here."""
    from benchmark.metric import METRICS
    from benchmark.sources import core_hash, source_hash

    metrics = content_id(sorted((n, source_hash(c)) for n, c in METRICS.items()))
    return {"core": core_hash(), "metrics": metrics}


def _other_plugin_code(record: RunRecord) -> bool:
    """True when the installed method and dataset plugins (and bases) of ``record`` hash
    differently from the code that made it; plugins not installed here are not judged."""
    from benchmark.dataset import DATASETS
    from benchmark.method import METHODS
    from benchmark.runner import code_version

    if record.method not in METHODS or record.dataset not in DATASETS:
        return False
    try:
        now = code_version(METHODS.get(record.method), DATASETS.get(record.dataset))
    except Exception:  # a plugin whose base is not installed: not judged here
        return False
    return any(
        record.code.get(k, v) != v for k, v in now.items() if k.startswith(("method:", "dataset"))
    )


def build(
    records: Iterable[RunRecord],
    out_dir: str | Path,
    *,
    min_seeds: int = 3,
    any_code: bool = False,
    selections: Mapping[str, str] | None = None,
    merge: bool = False,
) -> BuildResult:
    """Write ``out_dir/<dataset>.csv`` for every dataset with a group of ``min_seeds`` seeds.

    Records made by other core or metric code than the installed one are left out unless
    ``any_code`` (a leaderboard is never computed on a stale protocol silently).
    ``merge``: keep the rows of an existing ``<dataset>.csv`` that no new row replaces (same
    method, ``--set`` settings and selection: ``row_config``; ``replaces``), so that new runs
    join a committed leaderboard without re-running its other rows; a kept row whose code
    differs from the installed code is reported in ``left_out`` (``stale_rows``).
    """
    selections = selections or {}
    code = current_code()
    kept, left_out = [], []
    stale = stale_plugin = 0
    for r in records:
        if not any_code and (
            r.code.get("core") != code["core"] or r.code.get("metrics") != code["metrics"]
        ):
            stale += 1
            continue
        if not any_code and _other_plugin_code(r):
            stale_plugin += 1
            continue
        kept.append(r)
    if stale:
        left_out.append(
            f"{stale} record(s) made by other core or metric code (use --any-code to include)"
        )
    if stale_plugin:
        left_out.append(
            f"{stale_plugin} record(s) made by an older version of their method or dataset "
            "plugin (use --any-code to include)"
        )
    per_dataset: dict[str, list[dict[str, str]]] = {}
    for group in group_records(kept):
        first = group[0]
        if len(group) < min_seeds:
            left_out.append(
                f"{first.method} on {first.dataset} ({first.run_id[:8]}…): {len(group)} seed(s), "
                f"fewer than --min-seeds {min_seeds}"
            )
            continue
        rules = {selections.get(r.run_id, "none") for r in group}
        selection = rules.pop() if len(rules) == 1 else "mixed"
        per_dataset.setdefault(first.dataset, []).append(build_row(group, selection=selection))
    written, kept = {}, {}
    for dataset, rows in sorted(per_dataset.items()):
        path = Path(out_dir) / f"{dataset}.csv"
        if merge and path.exists():
            new_configs = {row_config(r) for r in rows}
            old = [r for r in read_leaderboard(path).rows if not replaces(new_configs, r)]
            left_out.extend(stale_rows(old))
            rows = [*old, *rows]
            per_dataset[dataset], kept[dataset] = rows, len(old)
        written[dataset] = write_leaderboard(path, rows)
    return BuildResult(written, per_dataset, left_out, kept)


def row_config(row: Mapping[str, str]) -> tuple[str, ...]:
    """What a row measured, apart from the code and seeds: dataset, method, its ``--set``
    settings (relative to the defaults, so a plugin change that adds a hyperparameter keeps
    the configuration) and selection rule — the row's ``reproduce`` command."""
    return tuple(row.get(k, "") for k in ("dataset", "method", "settings", "selection"))


def replaces(configs: set[tuple[str, ...]], old: Mapping[str, str]) -> bool:
    """True when a new row of one of ``configs`` replaces the ``old`` row: same configuration,
    and ``old`` built from local runs (a verified submission's row is never replaced)."""
    return row_config(old) in configs and old.get("verification", "local") == "local"


def stale_rows(rows: Iterable[Mapping[str, str]]) -> list[str]:
    """One line per row whose ``code_hash`` is not the installed code's for its method and
    dataset (the row names code that is no longer here: re-run it); rows of plugins not
    installed here are not judged."""
    from benchmark.dataset import DATASETS
    from benchmark.method import METHODS
    from benchmark.runner import code_version

    out = []
    for r in rows:
        if r["method"] not in METHODS or r["dataset"] not in DATASETS:
            continue
        try:
            settings = json.loads(r["settings"]) if r.get("settings") else {}
            mcls = METHODS.get(r["method"]).for_settings(settings)  # base=... picks the base
            now = code_version(mcls, DATASETS.get(r["dataset"]))["hash"]
        except Exception:  # a plugin whose base is not installed: not judged here
            continue
        if now != r["code_hash"]:
            out.append(
                f"kept row {r['method']} ({r['settings']}) was made by other code "
                f"({r['code_hash']}, installed {now}): re-run it"
            )
    return out


@contextlib.contextmanager
def locked(path: str | Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the folder of ``path`` (a leaderboard CSV) so that a
    read-modify-write of it by another process waits; released when the holder exits or dies.
    The folder is locked, not a lock file, so nothing is left beside the CSVs."""
    folder = Path(path).parent
    folder.mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # not POSIX: appends are not protected against each other
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the lock


def append_rows(path: str | Path, new: Sequence[dict[str, str]]) -> Path:
    """Add rows to a leaderboard CSV (created if absent) after checking that they belong:
    same dataset fingerprint and schema, and no row of the same method, hyperparameters and
    code already there. Concurrent appends (several ``bench verify``) take turns (``locked``)."""
    path = Path(path)
    with locked(path):
        rows: list[dict[str, str]] = []
        if path.exists():
            board = read_leaderboard(path)
            rows = board.rows
            for row in new:
                check_comparable(board, row["dataset"], row["dataset_fingerprint"], what="row")
                for old in rows:
                    if all(old[k] == row[k] for k in ("method", "hparams", "code_hash", "seeds")):
                        raise BenchError(
                            f"{path} already has a row for {row['method']} with these "
                            f"hyperparameters, code and seeds (source: {old['source']})"
                        )
        write_leaderboard(path, [*rows, *new])
    return path


def check_comparable(board: Leaderboard, dataset: str, fingerprint: str, what: str) -> None:
    """Refuse to put a result beside rows of another dataset or dataset fingerprint."""
    datasets = {r["dataset"] for r in board.rows}
    if board.rows and dataset not in datasets:
        raise BenchError(
            f"refusing to compare: {board.path} ranks {', '.join(sorted(datasets))}, "
            f"your {what} is on {dataset}"
        )
    other = sorted(board.fingerprints() - {fingerprint})
    if other:
        raise BenchError(
            f"refusing to compare: your {what} on {dataset} has dataset fingerprint "
            f"{fingerprint}, the leaderboard's rows have {', '.join(other)} (different dataset "
            f"content: other options, version or files); rerun on the leaderboard's dataset "
            f"(see its dataset_options and reproduce columns)"
        )


# -- rebuild ----------------------------------------------------------------------------------
@dataclass
class RebuildRow:
    """One row of a committed leaderboard to re-run with the installed code.

    ``jobs``: one per seed (the row's ``reproduce`` command); ``skipped``: why it cannot be
    re-run here (then no jobs); ``old``: the row's records found in the results folder
    (``read_old``); ``cost_s``: CPU seconds they took (training once per checkpoint +
    evaluation), None when some are not there (``old_costs``)."""

    board: Path
    row: dict[str, str]
    jobs: list[Job]
    plugins: list[str]
    skipped: str = ""
    old: list[RunRecord] = field(default_factory=list)
    cost_s: float | None = None


def read_old(rows: Sequence[RebuildRow], store: Any) -> None:
    """Fill each row's ``old`` with those of its ``run_ids`` that ``store`` holds (read once)."""
    for item in rows:
        ids = item.row.get("run_ids", "").split()
        item.old = [store.get(r) for r in ids if store.has(r)]


def parse_reproduce(
    command: str,
) -> tuple[str, str, list[int], dict[str, str], list[str], list[str]]:
    """(method, dataset, seeds, settings, extra splits, plugin files) of a row's ``reproduce``
    command (``bench run --method M --dataset D --seed ... --set k=v ... --eval-split S``).

    Raises ``BenchError`` for a command that is not such a ``bench run``."""
    import argparse
    import shlex

    try:
        words = shlex.split(command)
    except ValueError as exc:
        raise BenchError(f"unreadable reproduce command {command!r} ({exc})") from exc
    if words[:2] != ["bench", "run"]:
        raise BenchError(f"reproduce command {command!r} is not `bench run ...`")
    p = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    p.add_argument("--method", nargs="+", required=True)
    p.add_argument("--dataset", nargs="+", required=True)
    p.add_argument("--seed", nargs="+", type=int, default=[0])
    p.add_argument("--set", nargs="+", action="append", default=[])
    p.add_argument("--eval-split", action="append", default=[])
    p.add_argument("--plugin", action="append", default=[])
    try:
        args, rest = p.parse_known_args(words[2:])
    except (argparse.ArgumentError, SystemExit) as exc:
        raise BenchError(f"unreadable reproduce command {command!r}") from exc
    if rest or len(args.method) != 1 or len(args.dataset) != 1:
        raise BenchError(f"reproduce command {command!r} is not one method on one dataset")
    settings = {}
    for pair in (p for group in args.set for p in group):
        key, sep, value = pair.partition("=")
        if not sep:
            raise BenchError(f"reproduce command {command!r}: --set {pair!r} is not KEY=VALUE")
        settings[key] = value
    return args.method[0], args.dataset[0], args.seed, settings, args.eval_split, args.plugin


def old_costs(rows: Sequence[RebuildRow]) -> None:
    """Fill each row's ``cost_s`` from its ``old`` records: evaluation seconds of every run,
    plus the training seconds of each checkpoint counted once over all rows (a post-hoc
    method shares its base's checkpoint); None when some of its records are missing."""
    seen: set[str] = set()
    for item in rows:
        total = 0.0
        for record in item.old:
            timings = record.timings or {}
            total += float(timings.get("eval_s") or 0.0)
            if record.checkpoint and record.checkpoint not in seen:
                seen.add(record.checkpoint)
                history = timings.get("train_history") or []
                trained = sum(float(e.get("seconds") or 0.0) for e in history)
                total += max(trained, float(timings.get("train_s") or 0.0))
        complete = len(item.old) == len(item.row.get("run_ids", "").split())
        item.cost_s = total if complete else None


def rebuild_plan(folder: str | Path, datasets: str | None = None) -> list[RebuildRow]:
    """The rows of every leaderboard CSV in ``folder`` (those of datasets matching the fnmatch
    pattern ``datasets``) with the jobs that re-run each with the installed code.

    Raises ``BenchError`` when the folder holds no leaderboard CSV or a CSV is invalid."""
    import fnmatch

    from benchmark.dataset import DATASETS
    from benchmark.method import METHODS

    folder = Path(folder)
    paths = sorted(folder.glob("*.csv")) if folder.is_dir() else []
    paths = [p for p in paths if not datasets or fnmatch.fnmatch(p.stem, datasets)]
    if not paths:
        what = f" for datasets {datasets!r}" if datasets else ""
        raise BenchError(f"no leaderboard CSV in {folder}{what} (give --from DIR)")
    out = []
    for path in paths:
        for row in read_leaderboard(path).rows:
            method, dataset, seeds, settings, extra, plugins = parse_reproduce(row["reproduce"])
            item = RebuildRow(path, row, [], plugins)
            missing = [f for f in plugins if not Path(f).is_file()]
            if missing:
                item.skipped = f"plugin file {missing[0]} not found"
            elif not plugins and method not in METHODS:
                item.skipped = f"method {method!r} is not installed"
            elif not plugins and dataset not in DATASETS:
                item.skipped = f"dataset {dataset!r} is not installed"
            else:
                pairs = tuple(sorted(settings.items()))
                item.jobs = [Job(method, dataset, s, pairs, tuple(extra)) for s in seeds]
            out.append(item)
    return out


def rebuilt_row(item: RebuildRow, records: Sequence[RunRecord]) -> dict[str, str]:
    """``item``'s row built again from ``records`` (its jobs' new runs), keeping its
    selection rule, source and settings; verification ``local`` (your own runs)."""
    settings = json.loads(item.row["settings"]) if item.row.get("settings") else None
    return build_row(
        sorted(records, key=lambda r: r.seed),
        selection=item.row.get("selection") or "none",
        source=item.row.get("source") or "runs",
        settings=settings,
        plugin=item.plugins[0] if item.plugins else None,
    )


def row_changes(old: Mapping[str, str], new: Mapping[str, str]) -> str:
    """The metric whose mean moved most (absolute) between two rows; ``""`` when every mean
    is identical. A metric present in one row only counts as an infinite change."""
    worst, key = 0.0, ""
    for column in sorted(c for c in {*old, *new} if c.endswith("_mean")):
        a, b = old.get(column, ""), new.get(column, "")
        if not a and not b:
            continue
        delta = math.inf if not a or not b else abs(float(a) - float(b))
        if delta > worst:
            worst, key = delta, column.removesuffix("_mean")
    return key
