"""The ``bench`` command line: one module per subcommand."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from benchmark.cli import (
    cache,
    compare,
    dataset,
    leaderboard,
    listing,
    perf,
    plot,
    report,
    run,
    show,
    submit,
    sweep,
    table,
    verify,
)
from benchmark.errors import BenchError

COMMANDS = (
    listing,
    run,
    table,
    show,
    dataset,
    sweep,
    leaderboard,
    compare,
    submit,
    verify,
    report,
    plot,
    cache,
    perf,
)

EPILOG = """examples:
  bench list methods
  bench run --method erm --dataset glyph-lt --seed 0 1 2
  bench table --results results
  bench show 3f2a9c1e
  bench dataset waterbirds-synth --preview waterbirds.png
  bench sweep --method erm --dataset glyph-lt --grid lr=0.01,0.1 --select val-acc --seed 0 1 2
  bench perf metrics
  bench cache imagenet-lt --data-root /data --measure 2000
  bench plot --dataset glyph-lt --method 'ce,deconfound,tde' --out per_class.png
  bench perf train --backbone resnet32 --batch-size 128
"""


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (exit code 2), like every other
    error of bench; the full usage stays one ``--help`` away."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    common = Parser(add_help=False)
    common.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="FILE",
        help="load a plugin file (repeatable)",
    )
    parser = Parser(
        prog="bench",
        description="Robustness benchmark harness: bias, long tail, OoD, explanations.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from benchmark import __version__

    parser.add_argument("--version", action="version", version=f"bench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_parser(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        from benchmark.plugins import load_plugins

        load_plugins(args.plugin)
        return int(args.func(args) or 0)
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file or folder the user named that cannot be read or written
        print(f"bench: error: {os_error_line(exc)}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # bench never exits from inside a command: plugin code did
        import traceback

        frames = traceback.extract_tb(exc.__traceback__)
        where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
        print(f"bench: error: sys.exit({exc.code!r}) called{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130


def os_error_line(exc: OSError) -> str:
    """``[Errno 20] Not a directory: 'x/y'`` -> ``x/y: not a directory``: the path first."""
    what = (exc.strerror or str(exc)).rstrip(".")
    if exc.filename is None:
        return what
    path = f"{exc.filename}" + (f" -> {exc.filename2}" if exc.filename2 else "")
    return f"{path}: {what[:1].lower()}{what[1:]}"


if __name__ == "__main__":
    sys.exit(main())
