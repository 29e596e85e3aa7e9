"""Where a sweep's runs execute (DomainBed's ``command_launchers`` idea, as Python objects).

- ``local``: sequentially, in this process;
- ``gpus``: one worker process per visible GPU (``CUDA_VISIBLE_DEVICES`` pinned per worker),
  or ``--max-parallel`` CPU workers when there is no GPU;
- ``slurm``: through ``submitit`` (optional dependency, ``pip install 'bench[slurm]'``), with
  submitit's local executor as the test double (``--slurm-cluster local``).

Every launcher caps the number of runs in flight (``max_parallel``), re-loads ``--plugin``
files in its workers (``benchmark.plugins.loaded_files()``), and reports one ``Outcome`` per
job: a run id, or the error that stopped it. A failing run never stops the others.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.errors import BenchError
from benchmark.store import Store
from benchmark.sweep import Job


@dataclass
class Outcome:
    """What became of one job."""

    job: Job
    run_id: str = ""
    cached: bool = False
    error: str = ""
    started: float = 0.0
    finished: float = 0.0
    worker: str = ""


def execute(
    job: Job,
    results: str | Path,
    device: str = "auto",
    data_root: str | None = None,
    plugin_files: Sequence[str] = (),
    runner: Any = None,
) -> Outcome:
    """Run one job (in any process); errors become the outcome's ``error``."""
    started = time.time()
    worker = f"pid {os.getpid()}"
    if os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
        worker += f", CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']!r}"
    try:
        if runner is None:
            from benchmark.device import select_device
            from benchmark.plugins import load_plugins
            from benchmark.runner import Runner

            load_plugins(plugin_files)
            runner = Runner(Store(results), select_device(device), data_root, progress=False)
        record, cached = runner.run(
            job.method,
            job.dataset,
            job.seed,
            job.settings_dict(),
            extra_splits=job.extra_splits,
            predictions=job.predictions,
        )
        return Outcome(job, record.run_id, cached, "", started, time.time(), worker)
    except BenchError as exc:
        return Outcome(job, "", False, str(exc), started, time.time(), worker)
    except Exception as exc:  # a broken plugin fails its runs, not the sweep
        where = traceback.extract_tb(exc.__traceback__)[-1]
        error = f"{type(exc).__name__}: {exc} ({Path(where.filename).name}:{where.lineno})"
        return Outcome(job, "", False, error, started, time.time(), worker)


def execute_many(
    jobs: Sequence[Job],
    results: str,
    device: str,
    data_root: str | None,
    plugin_files: Sequence[str],
) -> list[Outcome]:
    """Run a chunk of jobs in one process (one submitit job); shares the dataset cache."""
    from benchmark.device import select_device
    from benchmark.plugins import load_plugins
    from benchmark.runner import Runner

    try:
        load_plugins(plugin_files)
        runner = Runner(Store(results), select_device(device), data_root, progress=False)
    except BenchError as exc:
        return [Outcome(j, error=str(exc)) for j in jobs]
    return [execute(j, results, runner=runner) for j in jobs]


def _unique(jobs: Sequence[Job]) -> list[Job]:
    return list(dict.fromkeys(jobs))


class Launcher:
    """Base: ``run(jobs, store) -> {job: Outcome}``."""

    name = ""

    def __init__(
        self,
        *,
        device: str = "auto",
        data_root: str | None = None,
        progress: bool = True,
        max_parallel: int | None = None,
        plugin_files: Sequence[str | Path] | None = None,
    ) -> None:
        from benchmark.plugins import loaded_files

        self.device = device
        self.data_root = str(data_root) if data_root else None
        self.progress = progress
        if max_parallel is not None and max_parallel < 1:
            raise BenchError("--max-parallel must be at least 1")
        self.max_parallel = max_parallel
        files = loaded_files() if plugin_files is None else plugin_files
        self.plugin_files = [str(Path(f).resolve()) for f in files]

    def run(self, jobs: Sequence[Job], store: Store) -> dict[Job, Outcome]:
        raise NotImplementedError

    def _bar(self, total: int, desc: str) -> Any:
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit="run", disable=not self.progress, leave=False)


class LocalLauncher(Launcher):
    """Sequential, in this process. A run another process is training right now (its lock is
    held) is put off to the end, when it is usually finished and only read back."""

    name = "local"

    def run(self, jobs: Sequence[Job], store: Store) -> dict[Job, Outcome]:
        from benchmark.device import select_device
        from benchmark.runner import Runner

        runner = Runner(store, select_device(self.device), self.data_root, progress=False)
        out: dict[Job, Outcome] = {}
        deferred: list[Job] = []
        jobs = _unique(jobs)
        with self._bar(len(jobs), "sweep (local)") as bar:
            for job in jobs:
                try:
                    planned = runner.plan(
                        job.method, job.dataset, job.seed, job.settings_dict(), job.extra_splits
                    )
                except BenchError as exc:
                    out[job] = Outcome(job, error=str(exc))
                    bar.update()
                    continue
                if not store.has(planned.run_id) and store.locked(planned.run_id):
                    deferred.append(job)
                    continue
                out[job] = execute(job, store.root, runner=runner)
                bar.update()
            for job in deferred:  # waits on the other process's lock, then reads its record
                out[job] = execute(job, store.root, runner=runner)
                bar.update()
        return {j: out[j] for j in jobs}


def visible_devices(devices: Sequence[str] | None = None) -> list[str]:
    """GPU ids for ``gpus``: given, else ``$CUDA_VISIBLE_DEVICES``, else every CUDA device."""
    if devices:
        return [str(d) for d in devices]
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def _context() -> Any:
    """``forkserver`` on Linux (children start from a clean process that has imported torch
    but never touched CUDA), ``spawn`` elsewhere."""
    import multiprocessing as mp

    if sys.platform.startswith("linux"):
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["benchmark.launchers", "benchmark.runner"])
        return ctx
    return mp.get_context("spawn")


def _worker(
    slot: str,
    threads: int,
    results: str,
    device: str,
    data_root: str | None,
    plugin_files: list[str],
    tasks: Any,
    done: Any,
) -> None:
    """One worker process: pinned to one GPU (``slot``) or to the CPU (``slot == "cpu"``)."""
    os.environ["CUDA_VISIBLE_DEVICES"] = "" if slot == "cpu" else slot
    import torch

    torch.set_num_threads(threads)
    from benchmark.device import select_device
    from benchmark.plugins import load_plugins
    from benchmark.runner import Runner

    try:
        load_plugins(plugin_files)
        dev = select_device("cpu" if slot == "cpu" else device)
        runner = Runner(Store(results), dev, data_root, progress=False)
    except BenchError as exc:
        runner, setup_error = None, str(exc)
    while True:
        item = tasks.get()
        if item is None:
            return
        index, job = item
        done.put(("start", index, os.getpid()))
        if runner is None:
            done.put(("done", index, Outcome(job, error=setup_error)))
        else:
            done.put(("done", index, execute(job, results, runner=runner)))


class GpuLauncher(Launcher):
    """One worker process per visible GPU; ``devices`` may name them (``["0", "1"]``). With no
    GPU, ``max_parallel`` CPU workers (default 1) share the cores, each with cores/N torch
    threads; the thread count is part of the run id (``benchmark.device.environment_key``), so
    their runs never share an id with runs of another thread count (``--launcher local``);
    ``threads`` sets the CPU workers' thread count instead."""

    name = "gpus"

    def __init__(
        self, devices: Sequence[str] | None = None, threads: int | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if threads is not None and threads < 1:
            raise BenchError("threads must be at least 1")
        self.threads = threads  # CPU workers' torch threads (default: cores / workers)
        slots = visible_devices(devices)
        if not slots:
            slots = ["cpu"] * (self.max_parallel or 1)
        self.slots = slots[: self.max_parallel] if self.max_parallel else slots

    def run(self, jobs: Sequence[Job], store: Store) -> dict[Job, Outcome]:
        jobs = _unique(jobs)
        if not jobs:
            return {}
        ctx = _context()
        tasks, done = ctx.Queue(), ctx.Queue()
        n = min(len(self.slots), len(jobs))
        threads = max(1, (os.cpu_count() or 1) // n) if self.slots[0] == "cpu" else 4
        if self.slots[0] == "cpu" and self.threads:
            threads = self.threads
        for item in enumerate(jobs):
            tasks.put(item)
        for _ in range(n):
            tasks.put(None)
        workers = [
            ctx.Process(
                target=_worker,
                args=(
                    self.slots[i],
                    threads,
                    str(store.root),
                    self.device,
                    self.data_root,
                    self.plugin_files,
                    tasks,
                    done,
                ),
                daemon=True,
            )
            for i in range(n)
        ]
        for w in workers:
            w.start()
        out: dict[int, Outcome] = {}
        running: dict[int, int] = {}  # pid -> job index
        try:
            with self._bar(len(jobs), f"sweep ({n} workers)") as bar:
                while len(out) < len(jobs):
                    try:
                        kind, index, payload = done.get(timeout=0.5)
                    except Exception:  # queue.Empty: look for dead workers
                        self._reap(workers, running, jobs, out, bar)
                        continue
                    if kind == "start":
                        running[payload] = index
                    else:
                        running = {p: i for p, i in running.items() if i != index}
                        out[index] = payload
                        bar.update()
        finally:
            for w in workers:
                w.join(timeout=5)
                if w.is_alive():
                    w.kill()
        return {jobs[i]: out[i] for i in range(len(jobs))}

    def _reap(
        self,
        workers: list[Any],
        running: dict[int, int],
        jobs: list[Job],
        out: dict[int, Outcome],
        bar: Any,
    ) -> None:
        for w in workers:
            if w.exitcode not in (None, 0) and w.pid in running:
                index = running.pop(w.pid)
                out[index] = Outcome(jobs[index], error=f"worker died (exit code {w.exitcode})")
                bar.update()
        if all(w.exitcode is not None for w in workers):
            for i, job in enumerate(jobs):
                if i not in out:
                    out[i] = Outcome(job, error="no worker left to run it")
                    bar.update()


class SlurmLauncher(Launcher):
    """Runs through ``submitit``: one cluster job per ``chunk`` runs, at most ``max_parallel``
    jobs submitted at once. ``cluster="local"`` uses submitit's local executor (tests)."""

    name = "slurm"

    def __init__(
        self,
        *,
        cluster: str | None = None,
        folder: str | Path | None = None,
        chunk: int = 1,
        partition: str | None = None,
        time_min: int = 60,
        gpus_per_job: int = 0,
        cpus_per_task: int | None = None,
        poll_s: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if chunk < 1:
            raise BenchError("--slurm-chunk must be at least 1")
        self.cluster = cluster
        self.folder = folder
        self.chunk = chunk
        self.partition = partition
        self.time_min = time_min
        self.gpus_per_job = gpus_per_job
        self.cpus_per_task = cpus_per_task
        self.poll_s = poll_s

    def executor(self, store: Store) -> Any:
        try:
            import submitit
        except ImportError:
            raise BenchError(
                "the slurm launcher needs submitit: pip install 'bench[slurm]'"
            ) from None
        folder = Path(self.folder) if self.folder else store.root / "slurm"
        executor = submitit.AutoExecutor(folder=folder / "%j", cluster=self.cluster)
        params: dict[str, Any] = {"timeout_min": self.time_min, "name": "bench-sweep"}
        if self.gpus_per_job:
            params["gpus_per_node"] = self.gpus_per_job
        if self.cpus_per_task:
            params["cpus_per_task"] = self.cpus_per_task
        if self.partition:
            params["slurm_partition"] = self.partition
        executor.update_parameters(**params)
        return executor

    def run(self, jobs: Sequence[Job], store: Store) -> dict[Job, Outcome]:
        jobs = _unique(jobs)
        if not jobs:
            return {}
        executor = self.executor(store)
        chunks = [jobs[i : i + self.chunk] for i in range(0, len(jobs), self.chunk)]
        cap = self.max_parallel or 4
        out: dict[Job, Outcome] = {}
        waiting = list(chunks)
        in_flight: list[tuple[Any, list[Job]]] = []
        with self._bar(len(jobs), "sweep (slurm)") as bar:
            while waiting or in_flight:
                while waiting and len(in_flight) < cap:
                    chunk = waiting.pop(0)
                    handle = executor.submit(
                        execute_many,
                        chunk,
                        str(store.root.resolve()),
                        self.device,
                        self.data_root,
                        self.plugin_files,
                    )
                    in_flight.append((handle, chunk))
                still = []
                for handle, chunk in in_flight:
                    if not handle.done():
                        still.append((handle, chunk))
                        continue
                    try:
                        for outcome in handle.result():
                            out[outcome.job] = outcome
                    except Exception as exc:  # the cluster job failed as a whole
                        first = str(exc).strip().splitlines()
                        msg = f"cluster job {handle.job_id} failed: {first[-1] if first else exc}"
                        for job in chunk:
                            out[job] = Outcome(job, error=msg)
                    bar.update(len(chunk))
                in_flight = still
                if in_flight:
                    time.sleep(self.poll_s)
        return {j: out[j] for j in jobs}


LAUNCHERS = {"local": LocalLauncher, "gpus": GpuLauncher, "slurm": SlurmLauncher}


def make_launcher(name: str, **kwargs: Any) -> Launcher:
    if name not in LAUNCHERS:
        from benchmark.errors import UnknownNameError

        raise UnknownNameError("launcher", name, LAUNCHERS)
    return LAUNCHERS[name](**kwargs)


__all__ = [
    "LAUNCHERS",
    "GpuLauncher",
    "Launcher",
    "LocalLauncher",
    "Outcome",
    "SlurmLauncher",
    "execute",
    "make_launcher",
]
