"""Plugin discovery: built-in folders, entry points, and ``--plugin FILE``.

The top-level ``methods/``, ``datasets/`` and ``metrics/`` folders are *not* importable
packages (``import datasets`` must stay the Hugging Face library). Their files are imported
under the private, stable names ``benchmark.plugins.<kind>.<stem>`` (the subpackages below
point their ``__path__`` at the folders), so pickling and worker processes still work.
Third-party packages register through the entry-point groups ``bench.methods``,
``bench.datasets`` and ``bench.metrics``.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import sys
import traceback
from collections.abc import Iterable
from pathlib import Path

from benchmark.errors import DuplicatePluginError, PluginLoadError
from benchmark.registry import PluginFailure, Registry, relpath

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


def _import_builtin(kind: str, path: Path) -> None:
    name = f"benchmark.plugins.{kind}.{path.stem}"
    try:
        importlib.import_module(name)
    except DuplicatePluginError:
        raise
    except Exception as exc:  # a broken plugin must not break unrelated commands
        sys.modules.pop(name, None)
        registry(kind).failures.append(
            PluginFailure(kind.rstrip("s"), relpath(path), _error_line(exc), path.stem)
        )


def _load_entry_point(kind: str, ep: importlib.metadata.EntryPoint) -> None:
    reg = registry(kind)
    try:
        obj = ep.load()
    except DuplicatePluginError:
        raise
    except Exception as exc:
        reg.failures.append(
            PluginFailure(
                kind.rstrip("s"),
                f"entry point {ep.group}:{ep.name} ({ep.value})",
                _error_line(exc),
                ep.name,
            )
        )
        return
    # ``pkg.module:Class`` whose class is not decorated: register it under the entry-point name
    is_plugin = inspect.isclass(obj) and reg.base is not None and issubclass(obj, reg.base)
    if is_plugin and ep.name not in reg and getattr(obj, "name", "") not in reg:
        reg.register(ep.name)(obj)


def load_file(path: str | Path) -> None:
    """Import a plugin file given with ``--plugin``; errors here are the user's to see."""
    path = Path(path).resolve()
    if path in _files:
        return
    if not path.is_file():
        raise PluginLoadError(f"--plugin {path}: no such file")
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:8]
    name = f"benchmark.plugins.local.{path.stem.replace('-', '_')}_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except DuplicatePluginError:
        sys.modules.pop(name, None)
        raise
    except Exception as exc:
        sys.modules.pop(name, None)
        raise PluginLoadError(
            f"--plugin {relpath(path)} failed to load: {_error_line(exc)}"
        ) from exc
    _files.append(path)


def load_plugins(files: Iterable[str | Path] = (), *, entry_points: bool = True) -> None:
    """Discover built-in plugins and entry points once, then any extra plugin ``files``."""
    global _loaded
    if not _loaded:
        _loaded = True
        import benchmark.backbones  # noqa: F401  (registers the core backbones)

        for kind in KINDS:
            folder = builtin_dir(kind)
            for path in sorted(folder.glob("*.py")) if folder else ():
                if not path.name.startswith("_"):
                    _import_builtin(kind, path)
        if entry_points:
            for kind in KINDS:
                for ep in importlib.metadata.entry_points(group=f"bench.{kind}"):
                    _load_entry_point(kind, ep)
    for path in files:
        load_file(path)


def loaded_files() -> list[Path]:
    """Files given with ``--plugin`` so far (worker processes load them again)."""
    return list(_files)


def failures() -> list[PluginFailure]:
    return [f for kind in KINDS for f in registry(kind).failures]
