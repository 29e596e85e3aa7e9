"""Errors a user can cause. The CLI prints them as one line and exits with code 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class BenchError(Exception):
    """A problem the user can fix (bad name, missing folder, bad value). Printed as one line."""


class UnknownNameError(BenchError, KeyError):
    """A name that is not registered; the message suggests the closest known names."""

    def __init__(self, kind: str, name: str, known: Iterable[str], hint: str = "") -> None:
        known = sorted(known)
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        if close:
            msg = f"unknown {kind} '{name}'; did you mean {', '.join(repr(c) for c in close)}?"
        else:
            shown = ", ".join(known[:12]) + (", ..." if len(known) > 12 else "")
            msg = f"unknown {kind} '{name}'; known: {shown or '(none)'}"
        if hint:
            msg += f" ({hint})"
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class DuplicatePluginError(BenchError):
    """Two plugins claim one name."""


class PluginLoadError(BenchError):
    """A plugin that a command needs failed to import."""


class DatasetNotFoundError(BenchError):
    """A real dataset's folder is missing or malformed; the message shows the expected layout."""
