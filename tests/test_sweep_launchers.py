"""Launchers: one worker per (fake) GPU with plugin files re-loaded, and slurm through
submitit's local executor, each with a cap on jobs in flight."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from benchmark.errors import BenchError
from benchmark.hparams import parse_assignments
from benchmark.launchers import GpuLauncher, SlurmLauncher, make_launcher, visible_devices
from benchmark.store import Store
from benchmark.sweep import Job

from conftest import tiny_settings

PLUGIN = '''
from benchmark import HParam, LogUniform, Method, register_method
import torch.nn.functional as F


@register_method("smooth-ce")
class SmoothCE(Method):
    """Label-smoothed cross-entropy (Szegedy et al. 2016)."""

    hparams = {"smoothing": HParam(0.1, LogUniform(0.01, 0.3), "mass spread over classes")}

    def loss(self, batch):
        return F.cross_entropy(self.model(batch.x), batch.y, label_smoothing=self.hp.smoothing)
'''


def jobs(method: str, seeds: list[int]) -> list[Job]:
    settings = tuple(sorted(parse_assignments(tiny_settings("glyph-lt")).items()))
    return [Job(method, "glyph-lt", s, settings) for s in seeds]


@pytest.mark.skipif(sys.platform != "linux", reason="fork-server workers")
def test_gpus_launcher_one_worker_per_device(
    tmp_path: Path, isolated_plugins: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from benchmark.plugins import load_plugins

    plugin = tmp_path / "smooth_ce.py"
    plugin.write_text(PLUGIN)
    load_plugins([plugin])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5,7")
    assert visible_devices() == ["3", "5", "7"]
    launcher = GpuLauncher(devices=["0", "1", "2"], device="cpu", progress=False, max_parallel=2)
    assert launcher.slots == ["0", "1"]  # the cap: two workers for three devices
    store = Store(tmp_path / "results")
    out = launcher.run(jobs("smooth-ce", [0, 1, 2]), store)
    assert all(not o.error for o in out.values()), [o.error for o in out.values()]
    assert len({o.run_id for o in out.values()}) == 3
    pins: dict[str, str] = {}
    for o in out.values():  # "pid N, CUDA_VISIBLE_DEVICES='0'": each worker has one device
        pid, device = o.worker.split(", ")
        assert pins.setdefault(pid, device) == device
        assert device in ("CUDA_VISIBLE_DEVICES='0'", "CUDA_VISIBLE_DEVICES='1'")
    assert 1 <= len(pins) <= 2
    records = {r.run_id: r for r in store.records()}
    assert {r.method for r in records.values()} == {"smooth-ce"}
    assert all(r.environment["device"] == "cpu" for r in records.values())
    again = launcher.run(jobs("smooth-ce", [0, 1, 2]), store)  # finished runs are skipped
    assert all(o.cached for o in again.values())


def test_gpus_launcher_without_gpus_uses_cpu_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert GpuLauncher(progress=False, max_parallel=3, plugin_files=[]).slots == ["cpu"] * 3
    assert GpuLauncher(progress=False, plugin_files=[]).slots == ["cpu"]
    with pytest.raises(BenchError, match="did you mean 'gpus'"):
        make_launcher("gpu")
    with pytest.raises(BenchError, match="at least 1"):
        GpuLauncher(max_parallel=0, plugin_files=[])


def test_slurm_through_submitit_local_executor(tmp_path: Path) -> None:
    pytest.importorskip("submitit", reason="submitit is the optional 'slurm' extra")
    launcher = SlurmLauncher(
        cluster="local",
        chunk=2,
        max_parallel=1,
        device="cpu",
        progress=False,
        poll_s=0.2,
        plugin_files=[],
    )
    store = Store(tmp_path / "results")
    work = [*jobs("erm", [0, 1]), Job("erm", "glyph-lt", 0, (("lrr", "0.1"),))]
    out = launcher.run(work, store)
    errors = [o.error for o in out.values()]
    assert errors[:2] == ["", ""] and "unknown setting 'lrr'" in errors[2]
    assert len(list(store.records())) == 2
    # two cluster jobs (chunks of 2), never more than one in flight: their runs never overlap
    spans = sorted((o.started, o.finished, o.worker.split(",")[0]) for o in out.values())
    by_pid: dict[str, list[float]] = {}
    for start, end, pid in spans:
        by_pid.setdefault(pid, []).extend([start, end])
    windows = sorted((min(v), max(v)) for v in by_pid.values())
    assert len(windows) == 2
    assert windows[0][1] <= windows[1][0]
    assert (tmp_path / "results" / "slurm").is_dir()  # submitit's logs live beside the runs


def test_slurm_without_submitit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "submitit", None)  # import fails as if not installed
    launcher = SlurmLauncher(progress=False, plugin_files=[])
    with pytest.raises(BenchError, match=r"pip install 'bench\[slurm\]'"):
        launcher.run(jobs("erm", [0]), Store(tmp_path))
