"""Sweeps: methods × datasets × seeds × hyperparameter configurations, resumable at any moment.

The two-phase protocol (DomainBed's, Gulrajani & Lopez-Paz 2021, §3):

1. **search**: every configuration (a grid, or random draws seeded by name) on one seed,
   evaluating the split the model-selection rule reads (``val`` for ``val-*`` rules);
2. **final**: the configuration the rule picks, re-run on every requested seed.

Runs are content-addressed (``Runner.plan``), so a sweep keeps no state of its own: re-running
it skips every finished run, and a sweep killed at any moment (SIGKILL included) loses only the
runs in flight. Records and checkpoints are written atomically and a lock per run id keeps two
sweeps on one results folder from training the same run twice.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmark.dataset import DATASETS
from benchmark.errors import BenchError, UnknownNameError
from benchmark.hparams import random_hparams
from benchmark.io import atomic_write_json
from benchmark.method import METHODS
from benchmark.record import RunRecord, content_id
from benchmark.store import Store

if TYPE_CHECKING:
    from benchmark.launchers import Launcher, Outcome


@dataclass(frozen=True)
class Rule:
    """A model-selection rule: pick the configuration with the best ``key`` on ``split``."""

    name: str
    split: str
    key: str
    description: str
    oracle: bool = False


RULES: dict[str, Rule] = {
    r.name: r
    for r in (
        Rule("val-acc", "val", "acc", "highest accuracy on the validation split"),
        Rule("val-bacc", "val", "bacc", "highest balanced accuracy on the validation split"),
        Rule(
            "val-worst-group",
            "val",
            "worst_group",
            "highest worst-group accuracy on the validation split (needs group labels)",
        ),
        Rule(
            "test-oracle",
            "test",
            "acc",
            "ORACLE: highest test accuracy; an upper bound, never a fair selection",
            oracle=True,
        ),
    )
}


def rule(name: str) -> Rule:
    if name not in RULES:
        raise UnknownNameError("model-selection rule", name, RULES)
    return RULES[name]


def fmt_value(value: Any) -> str:
    """A ``--set`` value as text that parses back to the same value (floats round-trip)."""
    return value if isinstance(value, str) else json.dumps(value)


@dataclass(frozen=True)
class Job:
    """One run of a sweep; ``settings`` are ``--set`` pairs as text, sorted."""

    method: str
    dataset: str
    seed: int
    settings: tuple[tuple[str, str], ...] = ()
    extra_splits: tuple[str, ...] = ()
    predictions: bool = False
    phase: str = "final"  # "search" or "final"
    config: int = 0  # index of the configuration within its (method, dataset)

    def settings_dict(self) -> dict[str, str]:
        return dict(self.settings)

    def command(self) -> str:
        """The ``bench run`` command that reproduces this run (same run id)."""
        return reproduce_command(
            self.method, self.dataset, [self.seed], self.settings_dict(), self.extra_splits
        )


def reproduce_command(
    method: str,
    dataset: str,
    seeds: Sequence[int],
    settings: Mapping[str, str],
    extra_splits: Sequence[str] = (),
    plugin: str | None = None,
) -> str:
    import shlex

    parts = ["bench", "run"]
    if plugin:
        parts += ["--plugin", plugin]
    parts += ["--method", method, "--dataset", dataset, "--seed", *map(str, seeds)]
    for key, value in sorted(settings.items()):
        parts += ["--set", f"{key}={value}"]
    for split in extra_splits:
        parts += ["--eval-split", split]
    return " ".join(shlex.quote(p) for p in parts)


@dataclass
class SweepSpec:
    """What to sweep. ``grid``: name -> values as text, or ``":N"`` for N points of the
    declared search space; ``random``: number of random configurations (trial 0 = defaults)."""

    methods: list[str]
    datasets: list[str]
    seeds: list[int] = field(default_factory=lambda: [0])
    settings: dict[str, str] = field(default_factory=dict)
    grid: dict[str, list[str] | str] = field(default_factory=dict)
    random: int = 0
    search: list[str] | None = None
    select: str | None = None
    search_seed: int | None = None
    predictions: bool = False

    def __post_init__(self) -> None:
        if self.grid and self.random:
            raise BenchError("choose either --grid or --random, not both")
        if self.random < 0:
            raise BenchError("--random must be a positive number of configurations")
        if not self.seeds:
            raise BenchError("a sweep needs at least one seed")
        if self.searching and self.select is None:
            raise BenchError(
                "a hyperparameter search needs a model-selection rule: --select " + "|".join(RULES)
            )
        if self.select is not None:
            rule(self.select)
        if self.search is not None and not self.random:
            raise BenchError("--search names the hyperparameters of --random; add --random N")

    @property
    def searching(self) -> bool:
        return bool(self.grid) or self.random > 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def sweep_id(self) -> str:
        return content_id(self.to_dict())


def expand(names: Iterable[str], registry: Any, what: str) -> list[str]:
    """Names, with fnmatch patterns (``'*'``, ``'decouple-*'``) expanded over ``registry``."""
    out: list[str] = []
    for name in names:
        if any(c in name for c in "*?["):
            matches = registry.names(name)
            if not matches:
                raise BenchError(f"no {what} matches {name!r}")
            out += matches
        else:
            registry.get(name)  # unknown names fail here, with suggestions
            out.append(name)
    return list(dict.fromkeys(out))


def parse_grid(pairs: Sequence[str]) -> dict[str, list[str] | str]:
    """``["lr=0.01,0.1", "weight_decay:4"]`` -> {"lr": ["0.01", "0.1"], "weight_decay": ":4"}."""
    grid: dict[str, list[str] | str] = {}
    for pair in pairs:
        if "=" in pair:
            key, values = pair.split("=", 1)
            items = [v.strip() for v in _split_values(values)]
            if not all(items):
                raise BenchError(f"--grid {pair!r}: empty value")
            grid[key.strip()] = items
        elif ":" in pair:
            key, n = pair.split(":", 1)
            if not n.strip().isdigit() or int(n) < 1:
                raise BenchError(f"--grid {pair!r}: expected NAME:N with N >= 1")
            grid[key.strip()] = f":{int(n)}"
        else:
            raise BenchError(f"--grid expects NAME=V1,V2,... or NAME:N, got {pair!r}")
    return grid


def _split_values(text: str) -> list[str]:
    """Split on commas outside brackets (``milestones=[60,80],[120,160]``)."""
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += ch in "[{"
        depth -= ch in "]}"
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return out


def configurations(spec: SweepSpec, method: str, dataset: str) -> list[dict[str, str]]:
    """The hyperparameter configurations of ``method`` on ``dataset`` (``--set`` pairs)."""
    mcls, dcls = METHODS.get(method), DATASETS.get(dataset)
    declared = mcls.declared()
    if spec.grid:
        axes: list[tuple[str, list[str]]] = []
        for key, values in spec.grid.items():
            bare = key.removeprefix("method.").removeprefix("dataset.")
            known = bare in declared or bare in dcls.options
            if not known:
                continue  # another method's hyperparameter (checked across the sweep)
            if isinstance(values, str):  # ":N" -> N points of the declared space
                h = declared.get(bare)
                if h is None or h.space is None:
                    raise BenchError(
                        f"--grid {key}{values}: {method} declares no search space for {bare}; "
                        f"give the values, e.g. --grid {bare}=V1,V2"
                    )
                values = [fmt_value(v) for v in h.space.grid(int(values[1:]))]
            axes.append((key, list(values)))
        return [
            dict(combo) for combo in itertools.product(*([(k, v) for v in vs] for k, vs in axes))
        ]
    if spec.random:
        searchable = {k: h for k, h in declared.items() if h.space is not None}
        names = list(searchable) if spec.search is None else spec.search
        for name in names:
            if name not in searchable:
                raise UnknownNameError(
                    "searchable hyperparameter", name, searchable, hint=f"of {method}"
                )
        configs = [{}]  # trial 0: the defaults
        for trial in range(1, spec.random):
            draw = random_hparams(searchable, trial, method, dataset)
            configs.append({k: fmt_value(draw[k]) for k in names})
        return configs
    return [{}]


def check_grid_names(spec: SweepSpec, methods: Sequence[str], datasets: Sequence[str]) -> None:
    """Every grid name must be declared by at least one swept method or dataset."""
    for key in spec.grid:
        bare = key.removeprefix("method.").removeprefix("dataset.")
        known: set[str] = set()
        for m in methods:
            known |= set(METHODS.get(m).declared())
        for d in datasets:
            known |= set(DATASETS.get(d).options)
        if bare not in known:
            raise UnknownNameError("--grid hyperparameter", bare, known)


@dataclass
class Selection:
    """The configuration a rule picked for one (method, dataset)."""

    method: str
    dataset: str
    rule: str
    config: int
    settings: dict[str, str]
    score: float
    scores: list[float]
    oracle: bool = False


def select(
    rule_: Rule, jobs: Sequence[Job], records: Mapping[Job, RunRecord]
) -> tuple[int, float, list[float]]:
    """Index of the best configuration (ties: the first), its score, and every score."""
    scores = []
    for job in jobs:
        record = records[job]
        values = record.metrics.get(rule_.split)
        if values is None or rule_.key not in values:
            have = ", ".join(sorted(values or {})) or "none"
            raise BenchError(
                f"selection rule {rule_.name} needs metric '{rule_.key}' on split "
                f"'{rule_.split}', which {job.method} on {job.dataset} does not report "
                f"(it has: {have})"
            )
        value = values[rule_.key]
        scores.append(value if isinstance(value, float | int) and not math.isnan(value) else -1.0)
    best = max(range(len(scores)), key=lambda i: (scores[i], -i))
    return best, scores[best], scores


@dataclass
class SweepResult:
    spec: SweepSpec
    final: dict[Job, Outcome]
    search: dict[Job, Outcome]
    selections: list[Selection]
    skipped: list[str]
    seconds: float

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in [*self.search.values(), *self.final.values()] if o.error]


class Sweep:
    """Plans and runs a sweep through a launcher; the results folder is its only state."""

    def __init__(self, spec: SweepSpec, store: Store, launcher: Launcher) -> None:
        self.spec = spec
        self.store = store
        self.launcher = launcher
        self.methods = expand(spec.methods, METHODS, "method")
        self.datasets = expand(spec.datasets, DATASETS, "dataset")
        check_grid_names(spec, self.methods, self.datasets)
        self.rule = rule(spec.select) if spec.select else None
        self.skipped: list[str] = []
        self.pairs: list[tuple[str, str]] = []
        for d in self.datasets:
            for m in self.methods:
                why = METHODS.get(m).incompatibility(DATASETS.get(d))
                if why:
                    self.skipped.append(f"{m} on {d}: {why}")
                else:
                    self.pairs.append((m, d))
        if not self.pairs:
            raise BenchError(
                "no compatible (method, dataset) pair in this sweep: " + "; ".join(self.skipped)
            )

    def extra_splits(self) -> tuple[str, ...]:
        return (self.rule.split,) if self.rule and self.rule.split != "test" else ()

    def _job(self, m: str, d: str, seed: int, cfg: Mapping[str, str], phase: str, i: int) -> Job:
        settings = {**self.spec.settings, **cfg}
        return Job(
            m,
            d,
            seed,
            tuple(sorted(settings.items())),
            self.extra_splits(),
            self.spec.predictions,
            phase,
            i,
        )

    def search_jobs(self) -> dict[tuple[str, str], list[Job]]:
        seed = self.spec.search_seed if self.spec.search_seed is not None else self.spec.seeds[0]
        return {
            (m, d): [
                self._job(m, d, seed, cfg, "search", i)
                for i, cfg in enumerate(configurations(self.spec, m, d))
            ]
            for m, d in self.pairs
        }

    def final_jobs(
        self, chosen: Mapping[tuple[str, str], tuple[int, Mapping[str, str]]]
    ) -> list[Job]:
        return [
            self._job(m, d, s, chosen[(m, d)][1], "final", chosen[(m, d)][0])
            for m, d in self.pairs
            for s in self.spec.seeds
        ]

    def plan(self) -> list[Job]:
        """Every job known before running: the search phase, or the final runs."""
        if self.spec.searching:
            return [j for jobs in self.search_jobs().values() for j in jobs]
        return self.final_jobs({p: (0, {}) for p in self.pairs})

    def check(self) -> None:
        """Every value of every run known before running (each grid point, each seed) is
        checked now, so that a bad one is refused before the valid ones train."""
        from benchmark.hparams import check_seed
        from benchmark.runner import check_settings

        for seed in self.spec.seeds:  # the final seeds, also when a search phase comes first
            check_seed(seed)
        for job in self.plan():
            try:
                check_settings(job.method, job.dataset, job.settings_dict(), job.seed)
            except BenchError as exc:  # name the sweep point: the value may come from --grid
                point = " ".join(f"{k}={v}" for k, v in job.settings) or "defaults"
                raise BenchError(
                    f"{exc} (sweep run {job.method} on {job.dataset}, seed {job.seed}: {point})"
                ) from None

    def run(self) -> SweepResult:
        self.check()
        t0 = time.perf_counter()
        cleanup_temporaries(self.store)
        manifest = self.store.root / "sweeps" / f"{self.spec.sweep_id()}.json"
        self._write_manifest(manifest, "running", [], {})
        search_out: dict[Job, Outcome] = {}
        selections: list[Selection] = []
        if self.spec.searching:
            assert self.rule is not None
            groups = self.search_jobs()
            search_out = self.launcher.run([j for js in groups.values() for j in js], self.store)
            chosen = {}
            for (m, d), jobs in groups.items():
                failed = [search_out[j] for j in jobs if search_out[j].error]
                if failed:
                    self.skipped.append(
                        f"{m} on {d}: {len(failed)} search run(s) failed "
                        f"(first: {failed[0].error}); no configuration selected"
                    )
                    continue
                records = {j: self.store.get(search_out[j].run_id) for j in jobs}
                best, score, scores = select(self.rule, jobs, records)
                cfg = {k: v for k, v in jobs[best].settings if k not in self.spec.settings}
                chosen[(m, d)] = (best, cfg)
                selections.append(
                    Selection(m, d, self.rule.name, best, cfg, score, scores, self.rule.oracle)
                )
            self.pairs = [p for p in self.pairs if p in chosen]
            final = self.final_jobs(chosen)
        else:
            final = self.plan()
        final_out = self.launcher.run(final, self.store) if final else {}
        result = SweepResult(
            self.spec, final_out, search_out, selections, self.skipped, time.perf_counter() - t0
        )
        self._write_manifest(manifest, "failed" if result.failed else "done", selections, final_out)
        return result

    def _write_manifest(
        self,
        path: Path,
        state: str,
        selections: Sequence[Selection],
        final: Mapping[Job, Outcome],
    ) -> None:
        """``DIR/sweeps/<id>.json``: the spec, the selections and the final run ids (read by
        ``bench leaderboard build`` to name each row's selection rule)."""
        atomic_write_json(
            path,
            {
                "sweep_id": self.spec.sweep_id(),
                "spec": self.spec.to_dict(),
                "state": state,
                "updated": datetime.now(UTC).isoformat(timespec="seconds"),
                "selections": [asdict(s) for s in selections],
                "final_runs": sorted(o.run_id for o in final.values() if o.run_id),
            },
        )


def cleanup_temporaries(store: Store, older_than_s: float = 600.0) -> int:
    """Remove temporary files left by killed writers (``Store.clean_temporaries``)."""
    return store.clean_temporaries(older_than_s)


def sweep_selections(store: Store) -> dict[str, str]:
    """run id -> the selection rule that chose its configuration, from the sweep manifests."""
    out: dict[str, str] = {}
    folder = store.root / "sweeps"
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        rule_name = (data.get("spec") or {}).get("select") or "none"
        for run_id in data.get("final_runs", []):
            out.setdefault(run_id, rule_name)
    return out
