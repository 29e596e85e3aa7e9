"""Hashes of source code, so that a record names the exact code that produced it."""

from __future__ import annotations

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


@functools.cache
def _file_hash(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def source_hash(obj: Any) -> str:
    """sha256 (16 hex) of the file that defines ``obj`` (and of its plugin base classes)."""
    h = hashlib.sha256()
    for cls in inspect.getmro(obj) if inspect.isclass(obj) else (obj,):
        try:
            path = inspect.getsourcefile(cls)
        except TypeError:
            continue
        if path and _is_plugin_file(Path(path).resolve()):
            h.update(_file_hash(str(Path(path).resolve())).encode())
    return h.hexdigest()[:16]


def _is_plugin_file(path: Path) -> bool:
    """Outside the core package, or a built-in plugin shipped inside the wheel."""
    return not path.is_relative_to(_CORE) or path.is_relative_to(_CORE / "_builtin")


@functools.cache
def core_hash() -> str:
    """sha256 (16 hex) of the core package's computational code (the CLI excluded)."""
    h = hashlib.sha256()
    for path in sorted(_CORE.rglob("*.py")):
        rel = path.relative_to(_CORE)
        if rel.parts[0] in ("cli", "_builtin") or rel.name in NOT_COMPUTATIONAL:
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
