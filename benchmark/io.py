"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Files are created with the mode a plain ``open(path, "w")`` would give (``0o666`` less the
umask), so that a team can share a results folder. Temporary files are named
``.<name>.w<pid>@<host>.<random>.tmp``; one whose writer is gone (a SIGKILL between create and
rename) is removed by the next write into its folder (``clean_stale_temporaries``): at once when
the writer ran on this host and its process no longer exists, else after ``STALE_AFTER_S``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

#: a temporary file from another host (or of an unknown writer) is stale after this long
STALE_AFTER_S = 600.0
_TMP = re.compile(r"\.w(\d+)@([0-9a-f]{8})\.[^.]*\.tmp$")


def _host() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def umask() -> int:
    """The process's umask (read without changing it for longer than two calls)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def clean_stale_temporaries(folder: str | Path, older_than_s: float = STALE_AFTER_S) -> int:
    """Remove the temporary files in ``folder`` whose writer is gone: this host's writers that
    no longer run, and any older than ``older_than_s`` seconds. Returns how many."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    removed, now, host = 0, time.time(), _host()
    for path in folder.glob(".*.tmp"):
        match = _TMP.search(path.name)
        try:
            dead = match is not None and match[2] == host and not _alive(int(match[1]))
            if dead or now - path.stat().st_mtime > older_than_s:
                path.unlink()
                removed += 1
        except FileNotFoundError:  # another cleaner was faster
            pass
    return removed


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``.

    The file gets mode ``0o666 & ~umask``; stale temporaries of the folder are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(path.parent)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.w{os.getpid()}@{_host()}.", suffix=".tmp", dir=path.parent
    )
    try:
        os.fchmod(fd, 0o666 & ~umask())  # mkstemp creates 0o600 whatever the umask
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True, allow_nan=True) + "\n")


def atomic_torch_save(path: str | Path, obj: Any) -> None:
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def torch_load(path: str | Path) -> Any:
    """Load tensors saved by this project (``weights_only``: no code runs on load)."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)
