"""Plugin discovery: built-in folders, entry points, plugin folders and ``--plugin FILE``.

Sources, in order:

1. the built-in files in the top-level ``methods/``, ``datasets/`` and ``metrics/`` folders
   (shipped inside the wheel as ``benchmark/_builtin/<kind>/``);
2. installed packages' entry points in the groups ``bench.methods``, ``bench.datasets``,
   ``bench.metrics`` (``name = "pkg.module"`` or ``"pkg.module:Class"``);
3. the folders listed in ``$BENCH_PLUGIN_PATH`` (``os.pathsep``-separated), every ``*.py``;
4. ``--plugin FILE`` (or a folder) on the command line.

Sources 1–3 are imported softly: a file that fails is recorded (``bench list`` shows it) and
breaks only the commands that need it. A ``--plugin`` file the user named must load.

The plugin folders are *not* importable packages (``import datasets`` must stay the Hugging
Face library). Built-in files are imported under the private, stable names
``benchmark.plugins.<kind>.<stem>`` (the subpackages point their ``__path__`` at the folders),
so pickling and worker processes still work; other files under ``benchmark.plugins.local``.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import os
import sys
import traceback
from collections.abc import Iterable
from pathlib import Path

from benchmark.errors import DuplicatePluginError, PluginLoadError
from benchmark.registry import FAILURES, PluginFailure, Registry, relpath

KINDS = ("methods", "datasets", "metrics")
_loaded = False
_files: list[Path] = []


def builtin_dir(kind: str) -> Path | None:
    """Where the built-in plugin files of ``kind`` live (a wheel ships them in ``_builtin``)."""
    package = Path(__file__).resolve().parent.parent
    shipped = package / "_builtin" / kind
    if shipped.is_dir():
        return shipped
    source = package.parent / kind
    if source.is_dir() and (package.parent / "pyproject.toml").exists():
        return source
    return None


def registry(kind: str) -> Registry:
    from benchmark.dataset import DATASETS
    from benchmark.method import METHODS
    from benchmark.metric import METRICS

    return {"methods": METHODS, "datasets": DATASETS, "metrics": METRICS}[kind]


def _error_line(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" ({relpath(frames[-1].filename)}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _module_name(path: Path, kind: str | None) -> str:
    if kind is not None and path.parent == builtin_dir(kind):
        return f"benchmark.plugins.{kind}.{path.stem}"
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:8]
    return f"benchmark.plugins.local.{path.stem.replace('-', '_')}_{digest}"


def import_file(path: Path, kind: str | None = None, *, strict: bool = False) -> None:
    """Import one plugin file. ``strict``: raise on failure, else record it in ``FAILURES``."""
    path = path.resolve()
    name = _module_name(path, kind)
    if name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except DuplicatePluginError:
        sys.modules.pop(name, None)
        raise
    except (Exception, SystemExit) as exc:  # a broken plugin must not break other commands
        sys.modules.pop(name, None)
        if strict:
            raise PluginLoadError(
                f"plugin {relpath(path)} failed to load: {_error_line(exc)}"
            ) from exc
        label = kind.rstrip("s") if kind else "plugin"
        FAILURES.append(PluginFailure(label, relpath(path), _error_line(exc), path.stem))


def import_folder(folder: Path, kind: str | None = None, *, strict: bool = False) -> None:
    """Import every ``*.py`` file of ``folder`` (files starting with ``_`` are skipped)."""
    for path in sorted(folder.glob("*.py")):
        if not path.name.startswith("_"):
            import_file(path, kind, strict=strict)


def _load_entry_point(kind: str, ep: importlib.metadata.EntryPoint) -> None:
    reg = registry(kind)
    try:
        obj = ep.load()
    except DuplicatePluginError:
        raise
    except (Exception, SystemExit) as exc:  # sys.exit() in a plugin is a load failure
        source = f"entry point {ep.group}:{ep.name} ({ep.value})"
        FAILURES.append(PluginFailure(kind.rstrip("s"), source, _error_line(exc), ep.name))
        return
    # ``pkg.module:Class`` whose class is not decorated: register it under the entry-point name
    is_plugin = inspect.isclass(obj) and reg.base is not None and issubclass(obj, reg.base)
    if is_plugin and ep.name not in reg and getattr(obj, "name", "") not in reg:
        reg.register(ep.name)(obj)


def load_file(path: str | Path) -> None:
    """Import a plugin file (or every file of a folder) named with ``--plugin``."""
    path = Path(path).resolve()
    if path in _files:
        return
    if path.is_dir():
        import_folder(path, strict=True)
    elif path.is_file():
        import_file(path, strict=True)
    else:
        raise PluginLoadError(f"--plugin {path}: no such file or folder")
    _files.append(path)


def load_plugins(files: Iterable[str | Path] = (), *, entry_points: bool = True) -> None:
    """Discover built-ins, entry points and ``$BENCH_PLUGIN_PATH`` once, then ``files``."""
    global _loaded
    if not _loaded:
        _loaded = True
        import benchmark.backbones  # noqa: F401  (registers the core backbones)

        for kind in KINDS:
            folder = builtin_dir(kind)
            if folder is not None:
                import_folder(folder, kind)
        if entry_points:
            for kind in KINDS:
                for ep in importlib.metadata.entry_points(group=f"bench.{kind}"):
                    _load_entry_point(kind, ep)
        for entry in os.environ.get("BENCH_PLUGIN_PATH", "").split(os.pathsep):
            if entry and Path(entry).is_dir():
                import_folder(Path(entry))
            elif entry and Path(entry).is_file():
                import_file(Path(entry))
    for path in files:
        load_file(path)


def loaded_files() -> list[Path]:
    """Files given with ``--plugin`` so far (worker processes load them again)."""
    return list(_files)


def failures() -> list[PluginFailure]:
    return list(FAILURES)
