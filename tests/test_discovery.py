"""Plugin discovery from built-in folders, entry points, plugin folders and --plugin files,
and the rule that ``import datasets`` always means the Hugging Face library."""

from __future__ import annotations

import importlib.metadata
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from benchmark import plugins
from benchmark.dataset import DATASETS
from benchmark.method import METHODS
from benchmark.metric import METRICS
from benchmark.registry import FAILURES

from conftest import REPO

MINIMAL_METHOD = textwrap.dedent(
    """
    from benchmark import Method, register_method

    @register_method("{name}")
    class Plugin(Method):
        \"\"\"A test plugin.\"\"\"
    """
)


def test_builtins_are_discovered_under_private_names() -> None:
    assert "erm" in METHODS and "glyph-lt" in DATASETS and "accuracy" in METRICS
    assert METHODS.get("erm").__module__ == "benchmark.plugins.methods.erm"
    assert DATASETS.get("glyph-lt").__module__ == "benchmark.plugins.datasets.glyph_lt"


def test_builtin_plugin_classes_pickle_across_processes() -> None:
    blob = pickle.dumps(METHODS.get("erm"))
    code = "import pickle,sys; cls = pickle.loads(sys.stdin.buffer.read()); print(cls.name)"
    out = subprocess.run(
        [sys.executable, "-c", code], input=blob, capture_output=True, check=True, cwd=REPO
    )
    assert out.stdout.decode().strip() == "erm"


def test_plugin_file(tmp_path: Path) -> None:
    path = tmp_path / "my_method.py"
    path.write_text(MINIMAL_METHOD.format(name="file-method"))
    with METHODS.isolated():
        plugins.load_file(path)
        assert METHODS.get("file-method").__module__.startswith("benchmark.plugins.local.")


def test_plugin_file_that_fails_is_an_error(tmp_path: Path) -> None:
    from benchmark.errors import PluginLoadError

    path = tmp_path / "broken.py"
    path.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(PluginLoadError, match=r"broken.py failed to load: RuntimeError: boom"):
        plugins.load_file(path)


def test_entry_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A package exposing ``bench.methods`` entry points: a module that registers itself, and
    an undecorated class registered under the entry point's name."""
    pkg = tmp_path / "thirdparty_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "registered.py").write_text(MINIMAL_METHOD.format(name="ep-registered"))
    (pkg / "bare.py").write_text(
        'from benchmark import Method\nclass Bare(Method):\n    """Bare."""\n'
    )
    (pkg / "broken.py").write_text("import not_a_module_anywhere\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    eps = [
        importlib.metadata.EntryPoint(
            "ep-registered", "thirdparty_pkg.registered", "bench.methods"
        ),
        importlib.metadata.EntryPoint("ep-bare", "thirdparty_pkg.bare:Bare", "bench.methods"),
        importlib.metadata.EntryPoint("ep-broken", "thirdparty_pkg.broken", "bench.methods"),
    ]

    def fake_entry_points(group: str) -> list[importlib.metadata.EntryPoint]:
        return [ep for ep in eps if ep.group == group]

    monkeypatch.setattr(importlib.metadata, "entry_points", fake_entry_points)
    monkeypatch.setattr(plugins, "_loaded", False)
    with METHODS.isolated():
        plugins.load_plugins()
        assert "ep-registered" in METHODS
        assert METHODS.get("ep-bare").__name__ == "Bare"
        assert any("ep-broken" in f.source and "ModuleNotFoundError" in f.error for f in FAILURES)
        from benchmark.errors import PluginLoadError

        with pytest.raises(PluginLoadError, match="ep-broken"):
            METHODS.get("ep-broken")


def test_broken_plugin_is_listed_and_does_not_break_other_commands(tmp_path: Path) -> None:
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "broken_method.py").write_text("import torch\nraise ImportError('missing dep')\n")
    (folder / "good_method.py").write_text(MINIMAL_METHOD.format(name="good-method"))
    env = {**os.environ, "BENCH_PLUGIN_PATH": str(folder)}

    def bench(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "benchmark.cli", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
        )

    listing = bench("list", "methods")
    assert listing.returncode == 0, listing.stderr
    assert "good-method" in listing.stdout
    assert "failed to load" in listing.stdout
    assert "broken_method.py: ImportError: missing dep" in listing.stdout
    needed = bench("run", "--method", "broken-method", "--dataset", "glyph-lt")
    assert needed.returncode == 2
    assert "broken_method.py: ImportError: missing dep" in needed.stderr


def test_import_datasets_is_hugging_face_in_pytest() -> None:
    import datasets

    assert hasattr(datasets, "load_dataset"), datasets
    assert "site-packages" in (datasets.__file__ or "")


def test_import_datasets_is_hugging_face_from_repo_root() -> None:
    code = (
        "import datasets, benchmark; benchmark.load_plugins(); import datasets as d2; "
        "print(hasattr(datasets, 'load_dataset'), d2 is datasets, datasets.__file__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert out.stdout.startswith("True True"), out.stdout
    assert str(REPO / "datasets") not in out.stdout


def test_plugin_folders_are_not_packages() -> None:
    for kind in plugins.KINDS:
        assert not (REPO / kind / "__init__.py").exists()


@pytest.mark.slow
def test_installed_wheel_ships_plugins_and_keeps_datasets(tmp_path: Path) -> None:
    """Build the wheel, install it (without dependencies) into a folder, and run from there."""
    wheel_dir, target = tmp_path / "wheel", tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheel_dir),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next(wheel_dir.glob("bench-*.whl"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    assert (target / "benchmark" / "_builtin" / "methods" / "erm.py").is_file()
    assert (target / "benchmark" / "_builtin" / "studies" / "tde_glyph_lt.py").is_file()
    code = (
        "import datasets, benchmark; from benchmark.plugins import builtin_dir; "
        "benchmark.load_plugins(); from benchmark.method import METHODS; "
        "from benchmark.sources import core_hash, source_hash; "
        "from benchmark.cli.studies import STUDIES, load_studies; load_studies(); "
        "print(benchmark.__file__, builtin_dir('methods'), 'erm' in METHODS and "
        "'tde-glyph-lt' in STUDIES, "
        "hasattr(datasets, 'load_dataset'), core_hash(), source_hash(METHODS.get('tde')))"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=True,
    ).stdout.split()
    assert out[0].startswith(str(target)) and out[1].startswith(str(target))
    assert out[2:4] == ["True", "True"]
    # the code hashes in run ids do not depend on how the package was installed
    from benchmark.method import METHODS
    from benchmark.sources import core_hash, source_hash

    assert out[4:] == [core_hash(), source_hash(METHODS.get("tde"))]
