"""``bench perf WHAT``: speed measurements of the harness's hot paths, one sub-command each.

A target is one ``add_<target>(targets, common)`` function; ``train`` is
``benchmark.perf_train.add_train``.
"""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    from benchmark import perf_train

    p = sub.add_parser(
        "perf",
        parents=[common],
        help="measure the speed of the hot paths",
        description="Speed measurements; each sub-command prints the baseline and the harness "
        "side by side.",
    )
    what = p.add_subparsers(dest="perf_command", metavar="WHAT", required=True)
    for add in (perf_train.add_train,):
        add(what, common)
