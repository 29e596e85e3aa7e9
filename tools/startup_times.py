"""Time the CLI's start-up: ``python tools/startup_times.py [REPEATS]``.

Runs each command REPEATS times (default 7) in a fresh process and prints, per command, the
best and median wall time and CPU time (user + sys, from ``getrusage``), with the load average
before and after. The plugin index is built first (one ``bench list``), as after any first use.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = [
    ["--help"],
    ["--version"],
    ["list"],
    ["run", "--method", "nosuch", "--dataset", "glyph-lt"],
]


def once(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one ``bench ARGV``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([BENCH, *argv], capture_output=True, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


BENCH = shutil.which("bench") or str(Path(sys.executable).parent / "bench")

if __name__ == "__main__":
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    print(f"load average before: {os.getloadavg()[0]:.2f} (cores: {os.cpu_count()})")
    once(["list"])  # the plugin index, as after any first use
    for argv in COMMANDS:
        walls, cpus = zip(*(once(argv) for _ in range(repeats)))
        print(
            f"bench {' '.join(argv):45s} wall best {min(walls):.2f} s, median "
            f"{statistics.median(walls):.2f} s; CPU best {min(cpus):.2f} s, median "
            f"{statistics.median(cpus):.2f} s"
        )
    print(f"load average after: {os.getloadavg()[0]:.2f}")
