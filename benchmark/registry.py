"""One generic registry per plugin kind (methods, datasets, metrics, backbones).

The decorator is the single source of truth: a plugin exists because its file registered it.
Collisions raise and name both files; unknown names raise with the closest known names.
"""

from __future__ import annotations

import fnmatch
import importlib
import inspect
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from benchmark.errors import DuplicatePluginError, PluginLoadError, UnknownNameError

T = TypeVar("T")
_NAME = re.compile(r"^[a-z0-9][a-z0-9\-.]*$")


@dataclass(frozen=True)
class PluginFailure:
    """A plugin file or entry point that failed to import."""

    kind: str  # "method", "dataset", "metric", or "plugin" when the file's kind is unknown
    source: str  # file path or "entry point group:name"
    error: str
    stem: str  # file stem / entry point name, used to explain a missing name


#: Every plugin that failed to import, whatever its kind (shown by ``bench list``).
FAILURES: list[PluginFailure] = []


@dataclass
class Entry(Generic[T]):
    name: str
    obj: T
    origin: str  # "path/to/file.py:line"


def _origin(obj: Any) -> str:
    try:
        path = inspect.getsourcefile(obj) or "?"
        line = inspect.getsourcelines(obj)[1]
    except (TypeError, OSError):
        return "?"
    return f"{path}:{line}"


def _natural_key(name: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


@dataclass
class Registry(Generic[T]):
    """Name -> plugin, filled by ``@registry.register("name")``."""

    kind: str  # "method", "dataset", ...
    base: type | None = None
    _entries: dict[str, Entry[T]] = field(default_factory=dict)
    #: "prefix" -> "module:function" making the plugin for a name "prefix:rest" (e.g. "hf:...")
    _prefixes: dict[str, str] = field(default_factory=dict)
    _resolved: dict[str, T] = field(default_factory=dict)

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator: register ``obj`` under ``name`` (lowercase kebab-case)."""
        if not _NAME.match(name):
            raise ValueError(f"{self.kind} name {name!r} must be lowercase kebab-case")

        def decorator(obj: T) -> T:
            if self.base is not None and not (inspect.isclass(obj) and issubclass(obj, self.base)):
                raise TypeError(f"{self.kind} {name!r} must subclass {self.base.__name__}")
            origin = _origin(obj)
            old = self._entries.get(name)
            if old is not None and old.origin.rsplit(":", 1)[0] != origin.rsplit(":", 1)[0]:
                raise DuplicatePluginError(
                    f"two {self.kind}s are named '{name}': {old.origin.rsplit(':', 1)[0]} "
                    f"and {origin.rsplit(':', 1)[0]}; rename one of them"
                )
            if inspect.isclass(obj):
                obj.name = name  # type: ignore[attr-defined]
            self._entries[name] = Entry(name, obj, origin)
            return obj

        return decorator

    def register_prefix(self, prefix: str, target: str) -> None:
        """Resolve names ``prefix:rest`` with ``target`` ("module:function", imported on first
        use), which returns the plugin for the whole name; resolved once per name."""
        self._prefixes[prefix] = target

    def get(self, name: str) -> T:
        """The plugin called ``name``; a clear error when unknown or when its file failed."""
        entry = self._entries.get(name)
        if entry is not None:
            return entry.obj
        prefix = name.split(":", 1)[0] if ":" in name else None
        if prefix in self._prefixes:
            if name not in self._resolved:
                module, function = self._prefixes[prefix].split(":")
                self._resolved[name] = getattr(importlib.import_module(module), function)(name)
            return self._resolved[name]
        for failure in FAILURES:
            if failure.kind in (self.kind, "plugin") and failure.stem.replace("_", "-") == name:
                raise PluginLoadError(
                    f"{self.kind} '{name}' failed to load from {failure.source}: {failure.error}"
                )
        raise UnknownNameError(self.kind, name, self._entries)

    def origin(self, name: str) -> str:
        return self._entries[name].origin

    def names(self, pattern: str | None = None, exclude: str | None = None) -> list[str]:
        """Registered names matching an fnmatch ``pattern``, in natural order."""
        out = [n for n in self._entries if pattern is None or fnmatch.fnmatch(n, pattern)]
        if exclude:
            out = [n for n in out if not fnmatch.fnmatch(n, exclude)]
        return sorted(out, key=_natural_key)

    def items(self) -> Iterator[tuple[str, T]]:
        for name in self.names():
            yield name, self._entries[name].obj

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    @contextmanager
    def isolated(self) -> Iterator[Registry[T]]:
        """Restore the entries and failures on exit (for tests that register throwaway plugins)."""
        saved, failures = dict(self._entries), list(FAILURES)
        try:
            yield self
        finally:
            self._entries.clear()
            self._entries.update(saved)
            FAILURES[:] = failures


def relpath(path: str | Path) -> str:
    """A path relative to the working directory when possible (for messages)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
