"""Checks of the output files a user names on the command line (before any work is done)."""

from __future__ import annotations

from pathlib import Path

from benchmark.errors import BenchError


def output_file(text: str, option: str, suffix: str | None = None) -> Path:
    """``text`` as the path of a file to write: its folder must exist (a typo in a folder
    name is an error, not a new folder), and it must not be a folder itself.

    Raises ``BenchError`` naming ``option`` and the path.
    """
    path = Path(text)
    if suffix is not None and path.suffix.lower() != suffix:
        raise BenchError(f"{option} must name a {suffix} file, got {path}")
    folder = path.parent
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise BenchError(f"{option} {path}: the folder {folder} {what}")
    if path.is_dir():
        raise BenchError(f"{option} {path} is a folder; name a file")
    return path
