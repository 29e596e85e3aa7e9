"""Paper studies: one seed paper's table as data (runs, published numbers, claims).

A study plugin is one file in the top-level ``studies/`` folder (shipped in the wheel as
``benchmark/_builtin/studies/``), in a ``$BENCH_PLUGIN_PATH`` folder, or named with
``--plugin FILE``; it subclasses :class:`Study` and registers it::

    @register_study("tde-glyph-lt")
    class TDEGlyphLT(Study):
        paper = "Tang, Huang, Zhang: ... (NeurIPS 2020)"
        dataset = "glyph-lt"
        methods = ("ce", "deconfound", "tde")
        claims = (Claim("few", "tde", ">", "deconfound", rule="every seed", published=...),)

``bench reproduce STUDY`` runs the study's missing runs through the sweep machinery
(``benchmark.sweep``: content-addressed, resumable, any launcher) and gives each claim a
verdict (:data:`VERDICTS`). This module lives in ``benchmark/cli/`` so that adding or editing a
study never changes a run id (the CLI is outside the hashed core).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from benchmark.registry import FAILURES, Registry

#: exit code of ``bench reproduce`` when a claim that ran did not reproduce
EXIT_NOT_REPRODUCED = 3
#: exit code when a claim could not run because its dataset is not on this machine
EXIT_DATA_MISSING = 4
#: exit code of ``bench reproduce --no-run`` when runs a claim needs are not stored
EXIT_RUNS_MISSING = 5

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
DATA_MISSING = "not run: data missing"
RUNS_FAILED = "not run: a run failed"
RUNS_MISSING = "not run: runs missing"
#: every verdict a claim can get
VERDICTS = (REPRODUCED, NOT_REPRODUCED, DATA_MISSING, RUNS_FAILED, RUNS_MISSING)
#: claim rules: compare the two methods on every seed both have, or their means over seeds
RULES = ("every seed", "mean")


@dataclass(frozen=True)
class Published:
    """Numbers a paper reports for a claim's methods (in %), where, and whether checked.

    ``values``: method key (as in the study) -> the published number; ``setting``: the
    paper's dataset and model (e.g. "ImageNet-LT, ResNeXt-50"); ``source``: where it was read
    (``methods.md`` section, README figure, table); ``verified``: checked against a public
    source (``../shared/specs/methods.md`` "Verification status"), else a direction only.
    """

    setting: str
    values: Mapping[str, float]
    source: str
    verified: bool


@dataclass(frozen=True)
class Claim:
    """``metric`` of ``method`` ``op`` ``metric`` of ``other`` (``op``: ">" or "<"), on
    ``split``, under ``rule`` ("every seed": on each seed both methods have; "mean": the
    means over seeds). ``published``: the paper's numbers behind the claim (context: they are
    on the paper's data, not on this study's)."""

    metric: str
    method: str
    op: str
    other: str
    rule: str = "every seed"
    split: str = "test"
    published: tuple[Published, ...] = ()
    note: str = ""

    def __post_init__(self) -> None:
        if self.op not in (">", "<"):
            raise ValueError(f"claim operator must be '>' or '<', not {self.op!r}")
        if self.rule not in RULES:
            raise ValueError(f"claim rule must be one of {', '.join(RULES)}, not {self.rule!r}")

    def text(self) -> str:
        return (
            f"{self.metric} of {self.method} {self.op} {self.metric} of {self.other} "
            f"({self.rule}, {self.split} split)"
        )

    def holds(self, a: float, b: float) -> bool:
        return a > b if self.op == ">" else a < b


class Study:
    """Base of study plugins: class attributes only (a study is data).

    ``dataset`` with ``settings`` (``--set`` pairs as text, shared by every run; dataset
    options as ``dataset.KEY``), ``methods`` run on ``seeds``; ``claims``; ``paper`` and
    ``about`` (one line each); ``data`` describes what the dataset needs ("built-in" or the
    real data it reads).
    """

    name: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    about: ClassVar[str] = ""
    dataset: ClassVar[str] = ""
    methods: ClassVar[tuple[str, ...]] = ()
    seeds: ClassVar[tuple[int, ...]] = (0, 1, 2)
    settings: ClassVar[Mapping[str, str]] = {}
    claims: ClassVar[tuple[Claim, ...]] = ()
    data: ClassVar[str] = "built-in"

    @classmethod
    def command(cls) -> str:
        """The ``bench run`` command of the study's runs (the same run ids)."""
        from benchmark.sweep import reproduce_command

        return reproduce_command(",".join(cls.methods), cls.dataset, cls.seeds, cls.settings)


STUDIES: Registry[type[Study]] = Registry("study", Study)


def register_study(name: str) -> Any:
    """Class decorator: register a :class:`Study` subclass under ``name``."""
    return STUDIES.register(name)


_loaded = False


def builtin_studies_dir() -> Path | None:
    from benchmark.plugins import builtin_dir

    return builtin_dir("studies")


def load_studies() -> None:
    """Import the built-in study files once (plugin folders and ``--plugin`` files were
    imported by the plugin discovery already: a study file there registers itself)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    folder = builtin_studies_dir()
    if folder is None:
        return
    from benchmark.plugins import import_folder

    before = len(FAILURES)
    import_folder(folder, "studies")  # a broken study is recorded, the others still load
    for i in range(before, len(FAILURES)):  # the loader labels a kind by its folder's name
        FAILURES[i] = replace(FAILURES[i], kind="study")


# -- results ------------------------------------------------------------------------------------
@dataclass
class Measured:
    """One method's values of a claim's metric, per seed (fractions, as in the records)."""

    method: str
    values: dict[int, float] = field(default_factory=dict)
    run_ids: dict[int, str] = field(default_factory=dict)

    def mean(self) -> float:
        vals = [v for v in self.values.values() if not math.isnan(v)]
        return statistics.fmean(vals) if vals else math.nan

    def std(self) -> float:
        vals = [v for v in self.values.values() if not math.isnan(v)]
        return statistics.stdev(vals) if len(vals) > 1 else math.nan


@dataclass
class ClaimResult:
    claim: Claim
    verdict: str
    measured: list[Measured]
    why: str = ""  # what is missing, which seeds fail, ...


@dataclass
class StudyResult:
    study: type[Study]
    claims: list[ClaimResult]
    data_missing: str = ""  # the dataset's error line (with the expected layout)
    failed: list[str] = field(default_factory=list)
    ran: int = 0
    stored: int = 0
    missing: list[str] = field(default_factory=list)  # run commands not in the store
    other_env: dict[str, int] = field(default_factory=dict)  # env -> missing runs stored there
    env_note: str = ""  # when judged from runs of another thread count (bench report)

    def exit_code(self) -> int:
        """1 a run failed, 3 a claim did not reproduce, 4 data missing, 5 runs not stored
        (``--no-run``), else 0 (the first that applies)."""
        verdicts = {c.verdict for c in self.claims}
        if self.failed or RUNS_FAILED in verdicts:
            return 1
        if NOT_REPRODUCED in verdicts:
            return EXIT_NOT_REPRODUCED
        if DATA_MISSING in verdicts or self.data_missing:
            return EXIT_DATA_MISSING
        if RUNS_MISSING in verdicts:
            return EXIT_RUNS_MISSING
        return 0


def judge(
    claim: Claim,
    records: Mapping[tuple[str, int], Any],
    seeds: Sequence[int],
    *,
    data_missing: bool = False,
    failed: bool = False,
) -> ClaimResult:
    """The verdict of ``claim`` from the study's ``records`` ((method, seed) -> RunRecord)."""
    measured = []
    for m in (claim.method, claim.other):
        got = Measured(m)
        for s in seeds:
            record = records.get((m, s))
            if record is None:
                continue
            value = record.metrics.get(claim.split, {}).get(claim.metric)
            got.values[s] = math.nan if value is None else float(value)
            got.run_ids[s] = record.run_id
        measured.append(got)
    if data_missing:
        return ClaimResult(claim, DATA_MISSING, measured)
    a, b = measured
    absent = [f"{g.method} seed {s}" for g in measured for s in seeds if s not in g.values]
    if absent:
        verdict = RUNS_FAILED if failed else RUNS_MISSING
        return ClaimResult(claim, verdict, measured, "no record of " + ", ".join(absent))
    nan = [f"{g.method} seed {s}" for g in measured for s, v in g.values.items() if math.isnan(v)]
    if nan:
        why = f"metric '{claim.metric}' not in the records of " + ", ".join(nan)
        return ClaimResult(claim, NOT_REPRODUCED, measured, why)
    if claim.rule == "mean":
        ok = claim.holds(a.mean(), b.mean())
        return ClaimResult(claim, REPRODUCED if ok else NOT_REPRODUCED, measured)
    bad = [s for s in seeds if not claim.holds(a.values[s], b.values[s])]
    if bad:
        why = "fails on seed(s) " + " ".join(map(str, bad))
        return ClaimResult(claim, NOT_REPRODUCED, measured, why)
    return ClaimResult(claim, REPRODUCED, measured)


def evaluate(
    study: type[Study],
    store: Any,
    *,
    launcher: Any = None,
    data_root: str | None = None,
    device: str = "auto",
    other_threads: bool = False,
) -> StudyResult:
    """Run what ``study`` misses (through ``launcher``; None = run nothing, read the store)
    and judge every claim.

    ``other_threads`` (only without a launcher: ``bench report``): when this environment
    lacks runs that the store holds, every one of them, from this torch and CPU with another
    torch thread count, judge those runs instead (``StudyResult.env_note`` says so)."""
    from benchmark.device import select_device
    from benchmark.errors import BenchError, DatasetNotFoundError
    from benchmark.runner import Runner

    runner = Runner(store, select_device(device), data_root, progress=False)
    seeds = tuple(study.seeds)
    planned: dict[tuple[str, int], Any] = {}
    try:
        for m in study.methods:
            for s in seeds:
                planned[(m, s)] = runner.plan(m, study.dataset, s, dict(study.settings))
    except DatasetNotFoundError as exc:
        claims = [judge(c, {}, seeds, data_missing=True) for c in study.claims]
        return StudyResult(study, claims, data_missing=str(exc))
    result = StudyResult(study, [])
    missing = [key for key, p in planned.items() if not store.has(p.run_id)]
    result.stored = len(planned) - len(missing)
    from benchmark.sweep import reproduce_command

    result.missing = [reproduce_command(m, study.dataset, [s], study.settings) for m, s in missing]
    if missing:
        result.other_env = stored_elsewhere([planned[k] for k in missing], store)
    if missing and launcher is None and other_threads and runner.device.type == "cpu":
        threads = threads_holding_all([planned[k] for k in missing], store, runner.device)
        if threads is not None:
            import torch

            before = torch.get_num_threads()
            torch.set_num_threads(threads)  # the thread count is part of the run ids
            try:
                other = evaluate(study, store, data_root=data_root, device=device)
            finally:
                torch.set_num_threads(before)
            if not other.missing:
                other.env_note = f"judged from runs made with {threads} torch thread(s)"
                return other
    failed_methods: set[str] = set()
    if missing and launcher is not None:
        from benchmark.sweep import Sweep, SweepSpec

        spec = SweepSpec(
            methods=list(dict.fromkeys(m for m, _ in missing)),
            datasets=[study.dataset],
            seeds=list(dict.fromkeys(s for _, s in missing)),
            settings=dict(study.settings),
        )
        try:
            outcome = Sweep(spec, store, launcher).run()
        except BenchError as exc:
            result.failed.append(str(exc))
            failed_methods |= {m for m, _ in missing}
        else:
            for o in outcome.final.values():
                if o.error:
                    result.failed.append(f"{o.job.method} seed {o.job.seed}: {o.error}")
                    failed_methods.add(o.job.method)
                elif not o.cached:
                    result.ran += 1
            result.missing = [
                reproduce_command(m, study.dataset, [s], study.settings)
                for (m, s) in missing
                if not store.has(planned[(m, s)].run_id)
            ]
    records = {k: store.get(p.run_id) for k, p in planned.items() if store.has(p.run_id)}
    result.claims = [
        judge(c, records, seeds, failed=bool({c.method, c.other} & failed_methods))
        for c in study.claims
    ]
    return result


def stored_elsewhere(planned: Sequence[Any], store: Any) -> dict[str, int]:
    """How many of ``planned`` runs the store holds made in another environment (torch build,
    CPU threads, GPU): same method, data, settings, seed and code, another ``env_key``.
    Keyed by a short description of that environment."""
    wanted = {
        (p.method, p.dataset, p.bundle.fingerprint, _key(p.hparams), p.seed, p.code["hash"])
        for p in planned
    }
    found: dict[str, set[tuple[Any, ...]]] = {}
    for r in store.records():
        key = (r.method, r.dataset, r.dataset_fingerprint, _key(r.hparams), r.seed, r.code["hash"])
        if key in wanted and not r.extra_splits:
            found.setdefault(env_text(r.env_key), set()).add(key)
    return {env: len(keys) for env, keys in found.items()}


def threads_holding_all(planned: Sequence[Any], store: Any, device: Any) -> int | None:
    """A torch thread count with which the store holds every one of ``planned`` (same
    torch, device and CPU instruction set, same code, data, settings and seed), or None."""
    from benchmark.device import environment_key

    if not planned:
        return None
    here = {k: v for k, v in environment_key(device).items() if k != "threads"}
    wanted = {
        (p.method, p.dataset, p.bundle.fingerprint, _key(p.hparams), p.seed, p.code["hash"])
        for p in planned
    }
    found: dict[int, set[tuple[Any, ...]]] = {}
    for r in store.records():
        env = dict(r.env_key)
        threads = env.pop("threads", None)
        key = (r.method, r.dataset, r.dataset_fingerprint, _key(r.hparams), r.seed, r.code["hash"])
        if threads is not None and env == here and key in wanted and not r.extra_splits:
            found.setdefault(int(threads), set()).add(key)
    full = sorted(n for n, keys in found.items() if keys == wanted)
    return full[0] if full else None


def _key(hparams: Mapping[str, Any]) -> str:
    import json

    return json.dumps(hparams, sort_keys=True, default=str)


def env_text(env: Mapping[str, Any]) -> str:
    """``{"device": "cpu", "threads": 2, ...}`` -> "cpu, 2 torch threads, torch 2.x"."""
    parts = [str(env.get("device", "?"))]
    if "threads" in env:
        parts.append(f"{env['threads']} torch thread{'s' if env['threads'] != 1 else ''}")
    if "gpu" in env:
        parts.append(str(env["gpu"]))
    parts.append(f"torch {env.get('torch', '?')}")
    return ", ".join(parts)


# -- text ---------------------------------------------------------------------------------------
def scale(metric: str) -> float:
    """Records hold fractions; accuracies and rates print in %, dcor² raw."""
    from benchmark.tables import _scale

    return _scale(metric)


def measured_text(claim: Claim, got: Measured, seeds: Sequence[int]) -> str:
    k = scale(claim.metric)
    if not got.values:
        return f"{got.method} —"
    per_seed = ", ".join(f"{got.values[s] * k:.2f}" if s in got.values else "—" for s in seeds)
    mean, std = got.mean() * k, got.std() * k
    spread = "" if math.isnan(std) else f" ± {std:.2f}"
    return f"{got.method} {mean:.2f}{spread} (seeds: {per_seed})"


def published_text(p: Published) -> str:
    values = ", ".join(f"{m} {v}" for m, v in p.values.items())
    status = "verified" if p.verified else "unverified: a direction, not a target"
    return f"{p.setting}: {values} [{p.source}; {status}]"


def report_lines(result: StudyResult) -> list[str]:
    """The text ``bench reproduce STUDY`` prints: what ran, then each claim's published and
    measured numbers and its verdict."""
    study = result.study
    seeds = tuple(study.seeds)
    settings = " ".join(f"{k}={v}" for k, v in sorted(study.settings.items()))
    lines = [
        f"{study.name}: {study.paper}",
        f"  {study.about}" if study.about else "",
        f"  runs: {', '.join(study.methods)} on {study.dataset}, seeds "
        f"{' '.join(map(str, seeds))}" + (f", --set {settings}" if settings else ""),
    ]
    lines = [line for line in lines if line]
    if result.data_missing:
        lines.append(f"  data missing: {result.data_missing}")
    else:
        total = len(study.methods) * len(seeds)
        lines.append(
            f"  {total} runs: {result.stored} already stored, {result.ran} ran now, "
            f"{len(result.failed)} failed, {len(result.missing)} missing"
        )
    for line in result.failed:
        lines.append(f"  failed: {line}")
    for i, c in enumerate(result.claims, 1):
        lines.append(f"claim {i}: {c.claim.text()}")
        if c.claim.note:
            lines.append(f"  note: {c.claim.note}")
        for p in c.claim.published:
            lines.append(f"  published ({published_text(p)})")
        if c.verdict != DATA_MISSING:
            measured = "; ".join(measured_text(c.claim, m, seeds) for m in c.measured)
            lines.append(f"  measured ({study.dataset}): {measured}")
        lines.append(f"  verdict: {c.verdict}" + (f" ({c.why})" if c.why else ""))
    counts = {v: sum(c.verdict == v for c in result.claims) for v in VERDICTS}
    summary = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
    lines.append(f"summary: {len(result.claims)} claim(s): {summary}")
    return lines


def hint_lines(result: StudyResult) -> list[str]:
    """Notes for stderr: runs stored under another environment, commands of missing runs."""
    lines = []
    for env, n in result.other_env.items():
        lines.append(
            f"note: {n} of the {len(result.missing)} missing run(s) are stored from another "
            f"environment ({env}); run ids include the environment, so they are not reused "
            "here (e.g. OMP_NUM_THREADS=N sets the torch threads)"
        )
    return lines
