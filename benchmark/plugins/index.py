"""An index of the plugins, so that ``bench list`` and unknown-name errors need no import.

Importing the plugins means importing torch (seconds). The index stores, per plugin file,
what ``bench list`` shows (names, tracks, base, description, origin) and the error of a file
that failed to import, keyed by the sha256 of the file's bytes. It lives in
``$BENCH_CACHE/plugin-index.json`` (else ``~/.cache/bench``) and is valid while:

- every plugin file in use (built-in folders, ``$BENCH_PLUGIN_PATH``, ``--plugin``) has the
  hash stored for it (a new, edited or removed file rebuilds the index);
- the entry points of the ``bench.*`` groups, and the hashes of their module files, are the
  ones stored;
- the environment key is the same: Python and bench versions, the hash of the core package's
  sources, and the modification times of the ``site-packages`` folders (installing a package
  can fix a plugin that failed to import).

Otherwise the plugins are imported (``load_plugins``) and the index is rewritten from the
registries. A plugin file that imports a helper module is keyed by its own bytes only: editing
the helper alone is not noticed until the plugin file, the core or the environment changes.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import inspect
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

INDEX_VERSION = 1
KINDS = ("methods", "datasets", "metrics")


def index_path() -> Path:
    """``$BENCH_CACHE/plugin-index.json`` (else ``~/.cache/bench/plugin-index.json``)."""
    env = os.environ.get("BENCH_CACHE")
    return (Path(env) if env else Path.home() / ".cache" / "bench") / "plugin-index.json"


def _sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


def source_files(files: tuple[str | Path, ...] = ()) -> list[Path]:
    """Every plugin file in use, resolved: built-in folders, ``$BENCH_PLUGIN_PATH`` entries,
    then ``files`` (``--plugin``; a folder stands for its ``*.py`` files)."""
    from benchmark.plugins import builtin_dir

    def folder(path: Path) -> list[Path]:
        return [p.resolve() for p in sorted(path.glob("*.py")) if not p.name.startswith("_")]

    out: list[Path] = []
    for kind in KINDS:
        d = builtin_dir(kind)
        if d is not None:
            out += folder(d)
    for entry in os.environ.get("BENCH_PLUGIN_PATH", "").split(os.pathsep):
        if entry and Path(entry).is_dir():
            out += folder(Path(entry))
        elif entry and Path(entry).is_file():
            out.append(Path(entry).resolve())
    for f in files:
        p = Path(f)
        out += folder(p) if p.is_dir() else [p.resolve()]
    return list(dict.fromkeys(out))


def _entry_point_key() -> str:
    """Hash of the ``bench.*`` entry points and of their modules' files ("" when none)."""
    items = []
    for kind in KINDS:
        for ep in importlib.metadata.entry_points(group=f"bench.{kind}"):
            try:
                spec = importlib.util.find_spec(ep.value.split(":")[0])
                origin = spec.origin if spec and spec.origin else ""
            except (ImportError, ValueError):
                origin = ""
            # a module that cannot be located is never vouched for: the key changes each time
            digest = _sha256(Path(origin)) if origin else os.urandom(8).hex()
            items.append([ep.group, ep.name, ep.value, digest])
    if not items:
        return ""
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()


def environment_key() -> str:
    """Python and bench versions, the core's sources, and the site-packages folders' mtimes."""
    import benchmark

    core = Path(benchmark.__file__).resolve().parent
    h = hashlib.sha256()
    h.update(f"{INDEX_VERSION} {sys.version} {benchmark.__version__}".encode())
    for path in sorted(core.rglob("*.py")):
        if path.relative_to(core).parts[0] not in ("cli", "_builtin"):
            h.update(str(path.relative_to(core)).encode() + _sha256(path).encode())
    for entry in sys.path:
        if entry.endswith(("site-packages", "dist-packages")) and Path(entry).is_dir():
            h.update(f"{entry} {Path(entry).stat().st_mtime_ns}".encode())
    return h.hexdigest()


@dataclass
class Index:
    """What ``bench list`` shows, without importing a plugin."""

    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # kind -> rows
    failed: list[dict[str, str]] = field(default_factory=list)  # kind, source, error, stem
    from_cache: bool = False

    def names(self, kind: str) -> list[str]:
        return [r["name"] for r in self.rows.get(kind, [])]


def describe(obj: Any) -> str:
    """A plugin's one-line description: ``description``, else its docstring's first line."""
    text = getattr(obj, "description", "") or inspect.getdoc(obj) or ""
    return text.strip().splitlines()[0] if text.strip() else ""


def row(kind: str, name: str, obj: Any, origin: str) -> dict[str, Any]:
    """One ``bench list`` row of a registered plugin."""
    out: dict[str, Any] = {"name": name}
    if kind == "methods":
        out["tracks"] = ",".join(obj.tracks)
        out["base"] = obj.base or ""
    elif kind == "datasets":
        out["track"] = obj.track
        out["download"] = "needs data" if obj.needs_data_root else "built-in"
    else:
        out["tracks"] = ",".join(obj.tracks) if obj.tracks else "all"
        out["keys"] = ",".join(obj.higher_is_better)
    out["description"] = describe(obj)
    out["origin"] = origin
    return out


def from_registries() -> Index:
    """The index of what is registered in this process (plugins already imported)."""
    from benchmark.plugins import failures, registry

    rows = {}
    for kind in KINDS:
        reg = registry(kind)
        rows[kind] = [row(kind, n, reg.get(n), reg.origin(n)) for n in reg.names()]
    return Index(rows, [dict(f.__dict__) for f in failures()])


def _origin_file(origin: str) -> str:
    path = origin.rsplit(":", 1)[0]
    with contextlib.suppress(OSError, ValueError):
        return str(Path(path).resolve())
    return path


def _failure_file(source: str) -> str:
    if source.startswith("entry point "):
        return ""
    return str(Path(source).resolve())


def load_index(files: tuple[str | Path, ...] = ()) -> Index:
    """The plugins of this environment plus ``files``: from the stored index when it is
    valid for every file in use, else by importing them (then the index is rewritten).

    Raises ``PluginLoadError`` when a ``files`` entry fails to import (as ``--plugin`` does),
    ``DuplicatePluginError`` when two plugins share a name.
    """
    import benchmark.plugins as plugins

    if plugins._loaded:  # already imported in this process: the registries are the truth
        plugins.load_plugins(files)
        return from_registries()
    sources = source_files(files)
    hashes = {str(p): _sha256(p) for p in sources}
    env, eps = environment_key(), _entry_point_key()
    stored = _read()
    if stored is not None and stored.get("env") == env and stored.get("entry_points") == eps:
        entries = stored.get("files", {})
        if all(entries.get(p, {}).get("sha256") == h and h for p, h in hashes.items()):
            index = _assemble([entries[p] for p in hashes], stored.get("eps", {}))
            named = {str(p) for p in source_files(files)} - {str(p) for p in source_files()}
            for f in index.failed:
                if f["source"] in named:  # a --plugin file must load
                    from benchmark.errors import PluginLoadError
                    from benchmark.registry import relpath

                    raise PluginLoadError(
                        f"plugin {relpath(f['source'])} failed to load: {f['error']}"
                    )
            return index
    plugins.load_plugins(files)
    index = from_registries()
    _write(index, hashes, env, eps, stored)
    return index


def _assemble(entries: list[dict[str, Any]], eps: dict[str, Any]) -> Index:
    index = Index({k: [] for k in KINDS}, [], from_cache=True)
    for entry in [*entries, eps]:
        for kind in KINDS:
            index.rows[kind] += entry.get("rows", {}).get(kind, [])
        index.failed += entry.get("failed", [])
    from benchmark.registry import _natural_key

    for kind in KINDS:
        index.rows[kind].sort(key=lambda r: _natural_key(r["name"]))
    return index


def _read() -> dict[str, Any] | None:
    try:
        data = json.loads(index_path().read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("version") == INDEX_VERSION else None


def _write(
    index: Index,
    hashes: dict[str, str],
    env: str,
    eps: str,
    stored: dict[str, Any] | None,
) -> None:
    """Store ``index`` split per file (entries of other files still on disk are kept)."""
    files: dict[str, Any] = {}
    if stored is not None and stored.get("env") == env:
        files = {p: e for p, e in stored.get("files", {}).items() if Path(p).is_file()}
    per_file: dict[str, dict[str, Any]] = {
        p: {"sha256": h, "rows": {k: [] for k in KINDS}, "failed": []} for p, h in hashes.items()
    }
    rest: dict[str, Any] = {"rows": {k: [] for k in KINDS}, "failed": []}
    for kind, rows in index.rows.items():
        for r in rows:
            per_file.get(_origin_file(r["origin"]), rest)["rows"][kind].append(r)
    for f in index.failed:
        per_file.get(_failure_file(f["source"]), rest)["failed"].append(
            {**f, "source": _failure_file(f["source"]) or f["source"]}
        )
    files.update(per_file)
    payload = {"version": INDEX_VERSION, "env": env, "entry_points": eps, "files": files}
    payload["eps"] = rest
    from benchmark.io import atomic_write_text

    with contextlib.suppress(OSError):  # a read-only cache only costs speed
        atomic_write_text(index_path(), json.dumps(payload))


def check_name(index: Index, kind: str, name: str) -> None:
    """Raise the registry's ``UnknownNameError`` for a name no plugin of ``kind`` has, without
    importing a plugin. Names with a prefix (``hf:...``) and names of plugins that failed to
    load are left to the registry, which resolves or explains them."""
    from benchmark.errors import UnknownNameError

    if ":" in name or name in index.names(kind):
        return
    label = kind.rstrip("s")
    if any(f["stem"].replace("_", "-") == name for f in index.failed):
        return
    raise UnknownNameError(label, name, index.names(kind))
