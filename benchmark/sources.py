"""Hashes of source code, so that a record names the exact code that produced it."""

from __future__ import annotations

import ast
import functools
import hashlib
import inspect
import subprocess
from pathlib import Path
from typing import Any

import benchmark

_CORE = Path(benchmark.__file__).resolve().parent
#: core modules that never change a number (orchestration, leaderboards, reports): editing
#: them must not change every run id
NOT_COMPUTATIONAL = ("sweep.py", "launchers.py", "leaderboard.py", "submission.py", "report.py")
#: track modules: hashed with the plugins that import them, not with the core
TRACKS_DIR = _CORE / "tracks"
#: old module names of track modules (compatibility imports)
TRACK_ALIASES = {"benchmark.longtail": "benchmark.tracks.longtail"}


@functools.cache
def _file_hash(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def source_hash(obj: Any) -> str:
    """sha256 (16 hex) of the file that defines ``obj`` (and of its plugin base classes), and
    of the track modules those files import (``plugin_files``)."""
    h = hashlib.sha256()
    for path in plugin_files(obj):
        h.update(_file_hash(str(path)).encode())
    return h.hexdigest()[:16]


def plugin_files(obj: Any) -> list[Path]:
    """The files ``source_hash(obj)`` hashes, in order: the plugin files of ``obj``'s classes
    (method resolution order, repeats included), then the track modules
    (``benchmark/tracks/*.py``) they import, directly or through another track module, sorted.
    A plugin that imports no track module hashes exactly its own files."""
    files = []
    for cls in inspect.getmro(obj) if inspect.isclass(obj) else (obj,):
        try:
            path = inspect.getsourcefile(cls)
        except TypeError:
            continue
        if path and _is_plugin_file(Path(path).resolve()):
            files.append(Path(path).resolve())
    tracks: set[Path] = set()
    for path in files:
        tracks |= set(track_imports(str(path)))
    return files + sorted(tracks)


@functools.cache
def track_imports(path: str) -> tuple[Path, ...]:
    """Track module files that the Python file ``path`` imports, transitively (by reading its
    ``import`` statements; an unreadable or unparsable file imports none)."""
    found: set[Path] = set()
    todo = [Path(path)]
    while todo:
        current = todo.pop()
        try:
            tree = ast.parse(current.read_text(encoding="utf-8"))
        except (OSError, SyntaxError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            for name in names:
                file = _track_file(TRACK_ALIASES.get(name, name))
                if file is not None and file not in found:
                    found.add(file)
                    todo.append(file)
    return tuple(sorted(found))


def _track_file(module: str) -> Path | None:
    if not module.startswith("benchmark.tracks."):
        return None
    file = TRACKS_DIR.joinpath(*module.split(".")[2:]).with_suffix(".py")
    return file.resolve() if file.is_file() else None


def _is_plugin_file(path: Path) -> bool:
    """Outside the core package, or a built-in plugin shipped inside the wheel."""
    return not path.is_relative_to(_CORE) or path.is_relative_to(_CORE / "_builtin")


@functools.cache
def core_hash() -> str:
    """sha256 (16 hex) of the core package's computational code (the CLI and the track
    modules excluded: those hash with the plugins that import them)."""
    h = hashlib.sha256()
    for path in sorted(_CORE.rglob("*.py")):
        rel = path.relative_to(_CORE)
        if rel.parts[0] in ("cli", "_builtin", "tracks") or rel.name in NOT_COMPUTATIONAL:
            continue
        h.update(str(rel).encode())
        h.update(_file_hash(str(path)).encode())
    return h.hexdigest()[:16]


@functools.cache
def git_commit() -> str:
    """The git commit of the checkout (with ``-dirty``), or "" outside a git checkout."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=_CORE,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"],
            cwd=_CORE,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return sha + ("-dirty" if dirty else "")
