"""Every registered method on every compatible built-in dataset, at tiny size, on the CPU.

New plugins join this test without new test code. A method that cannot pass declares
``smoke_xfail = "reason"``; it is never dropped from the list silently.

Budget: each (method, dataset) pair trains and evaluates within ``BUDGET_CPU_S`` seconds of
process CPU time on one torch thread (the dataset is built beforehand and not counted), measured
with the shared tiny settings (``conftest.TINY_HP`` and the dataset's ``tiny`` options)
followed by the method's own ``smoke_settings`` (e.g. fewer second-stage epochs). At 5
CPU-seconds a pair, 120 pairs (today's 19 and forty new methods on two or three built-in
sets each) take at most 10 minutes of CPU, i.e. under 10 minutes on 2 cores.

The timed run uses one torch thread: with two OpenMP threads on a busy 2-core machine the
threads' spin-waits count as CPU time, so the same tiny pair measured 0.2 to 9 CPU-seconds
depending on the load (a two-model method failed at random); one thread measures the work.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Iterator

import pytest
import torch

from benchmark.dataset import DATASETS
from benchmark.device import select_device
from benchmark.hparams import parse_assignments
from benchmark.method import METHODS
from benchmark.plugins import load_plugins
from benchmark.runner import Runner
from benchmark.store import Store

from conftest import tiny_settings

load_plugins()

#: process CPU seconds (all threads) one pair may take to train and evaluate
BUDGET_CPU_S = 5.0
_timed: list[tuple[str, str, float]] = []


def smoke_settings(method: str, dataset: str) -> dict[str, object]:
    """The shared tiny settings, then the method's declared ``smoke_settings``."""
    settings = parse_assignments(tiny_settings(dataset))
    settings.update(METHODS.get(method).smoke_settings)
    return settings


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Torch on one thread for the timed run (see the module docstring)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def pairs() -> list[object]:
    out = []
    for mname, mcls in METHODS.items():
        for dname, dcls in DATASETS.items():
            if not dcls.builtin() or mcls.incompatibility(dcls):
                continue
            marks = []
            reason = getattr(mcls, "smoke_xfail", "")
            if reason:
                marks.append(pytest.mark.xfail(reason=reason, strict=True))
            out.append(pytest.param(mname, dname, id=f"{mname}-{dname}", marks=marks))
    return out


@pytest.mark.parametrize("method,dataset", pairs())
def test_method_runs_on_dataset(method: str, dataset: str, tmp_path) -> None:
    device = select_device(os.environ.get("BENCH_DEVICE", "cpu"))
    runner = Runner(Store(tmp_path), device, progress=False)
    settings = smoke_settings(method, dataset)
    bundle = runner.bundle(
        dataset,
        {k.removeprefix("dataset."): v for k, v in settings.items() if k.startswith("dataset.")},
    )
    with one_thread():
        cpu = time.process_time()
        record, cached = runner.run(method, dataset, 0, settings)
        cpu = time.process_time() - cpu
    assert not cached
    assert set(record.metrics) == set(bundle.eval_splits)
    for split, values in record.metrics.items():
        for key, value in values.items():
            assert math.isnan(value) or math.isfinite(value), (split, key, value)
    first = record.metrics[bundle.eval_splits[0]]
    mcls = METHODS.get(method)
    if mcls.classifier:
        assert 0.0 <= first["acc"] <= 1.0
    else:  # a method without class scores reports its own metrics
        assert set(mcls.reports) <= set(first), (mcls.reports, first)
    if device.type == "cpu":
        # the session's first run also pays one-off costs (lazy imports, kernel selection)
        budget = BUDGET_CPU_S * (2 if not _timed else 1)
        _timed.append((method, dataset, cpu))
        assert cpu <= budget, f"{method} on {dataset}: {cpu:.1f} CPU-s > {budget}"


def test_timed_run_uses_one_thread() -> None:
    """The budget is measured on one torch thread; the session's setting is restored."""
    before = torch.get_num_threads()
    with one_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_every_pair_is_covered() -> None:
    """Each method runs on at least one built-in dataset, each built-in dataset hosts ERM."""
    covered = {p.values[0] for p in pairs()}  # type: ignore[attr-defined]
    assert covered == set(METHODS.names())
    hosted = {p.values[1] for p in pairs() if p.values[0] == "erm"}  # type: ignore[attr-defined]
    assert hosted == {n for n, c in DATASETS.items() if c.builtin()}


@pytest.mark.parametrize("dataset", [n for n, c in DATASETS.items() if c.builtin()])
def test_declared_metadata_matches_the_bundle(dataset: str) -> None:
    """What a dataset declares (track, attributes) is what its bundle holds."""
    from benchmark.data import load_bundle

    cls = DATASETS.get(dataset)
    options = {k: v for k, v in cls.tiny.items()}
    bundle = load_bundle(dataset, options)
    assert bundle.track == cls.track and bundle.version == cls.version
    # ``is_ood``: the runner adds it to a split paired with an OoD split (``pair_with``)
    declared = set(cls.attrs) - {"is_ood"}
    paired = [s for s in bundle.eval_splits if bundle.splits[s].pair_with]
    assert ("is_ood" in cls.attrs) == bool(paired) or cls.track == "ood"
    for split in bundle.eval_splits:
        if not bundle.splits[split].pair_with:  # an OoD split holds only its own attributes
            assert declared <= set(bundle.splits[split].attrs) | {"mask"}, split
    assert declared <= set(bundle.splits["train"].attrs)
    assert declared <= set(bundle.splits[bundle.eval_splits[0]].attrs)
    train = bundle.splits["train"]
    assert train.labels.dtype == torch.int64
    assert int(train.labels.max()) < bundle.num_classes
    assert len(bundle.mean) == len(bundle.std) == bundle.input_shape[0]
