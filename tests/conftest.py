"""Shared fixtures: an isolated dataset cache per test session, results folders, a CLI runner."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

# Keep tests off the user's cache and quiet; one thread per worker keeps CPU tests predictable.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

REPO = Path(__file__).resolve().parent.parent

#: hyperparameters that make any method train in a second on the CPU (smoke tests)
TINY_HP = {"epochs": 1, "batch_size": 8, "backbone": "tiny-cnn"}


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    os.environ["BENCH_CACHE"] = str(tmp_path_factory.mktemp("bench-cache"))
    os.environ.pop("BENCH_RESULTS", None)
    os.environ.pop("BENCH_DATA", None)
    os.environ.pop("BENCH_PLUGIN_PATH", None)
    os.environ["BENCH_CONFIG"] = str(tmp_path_factory.mktemp("cfg") / "none.toml")
    from benchmark.plugins import load_plugins

    load_plugins()


@pytest.fixture
def results(tmp_path: Path) -> Path:
    return tmp_path / "results"


@pytest.fixture
def isolated_plugins() -> Iterator[None]:
    """Plugins registered during the test (e.g. with ``--plugin``) are forgotten afterwards."""
    import sys
    from contextlib import ExitStack

    from benchmark import plugins

    files = list(plugins._files)
    modules = set(sys.modules)
    with ExitStack() as stack:
        for kind in plugins.KINDS:
            stack.enter_context(plugins.registry(kind).isolated())
        yield
    plugins._files[:] = files
    for name in set(sys.modules) - modules:
        if name.startswith("benchmark.plugins.local."):
            del sys.modules[name]


@pytest.fixture
def cli(
    capsys: pytest.CaptureFixture[str], isolated_plugins: None
) -> Callable[..., tuple[int, str, str]]:
    """Run ``bench ARGS`` in-process; returns (exit code, stdout, stderr)."""
    from benchmark.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse errors
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def tiny_settings(dataset: str) -> list[str]:
    """``--set`` arguments for a tiny run of any method on built-in ``dataset``."""
    from benchmark.dataset import DATASETS
    from benchmark.plugins import load_plugins

    load_plugins()
    cls = DATASETS.get(dataset)
    pairs = [f"dataset.{k}={_fmt(v)}" for k, v in cls.tiny.items()]
    return pairs + [f"{k}={_fmt(v)}" for k, v in TINY_HP.items()]


def _fmt(value: object) -> str:
    import json

    return value if isinstance(value, str) else json.dumps(value)
