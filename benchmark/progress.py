"""Progress bars (tqdm on stderr), silenced in tests and with ``--quiet``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

T = TypeVar("T")


def progress_bar(items: Iterable[T], *, enabled: bool = True, **kwargs: Any) -> Iterable[T]:
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, dynamic_ncols=True, **kwargs)
