"""Checks of what a user types on the command line, done before any work: output files,
counts."""

from __future__ import annotations

import argparse
from collections.abc import Callable
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


def at_least(minimum: int) -> Callable[[str], int]:
    """argparse ``type=`` for a whole number >= ``minimum`` (counts, sizes, workers): the
    usage error names the value and the bound."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value}: must be >= {minimum}")
        return value

    parse.__name__ = f"int >= {minimum}"
    return parse


#: the seeds numpy and torch both accept (``benchmark.hparams.SEED``, without importing numpy)
SEED_MAX = 2**32 - 1


def seed_arg(text: str) -> int:
    """argparse ``type=`` for seeds: a whole number in [0, 2**32 - 1]; the usage error names
    the value and the range."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"{text}: a seed must be an integer in [0, {SEED_MAX}]")
    return value
