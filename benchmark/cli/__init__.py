"""The ``bench`` command line: one module per subcommand.

Start-up is kept short: ``bench --help`` and ``bench --version`` import no subcommand module
(the one-line help of each command is in ``COMMANDS``), and ``bench CMD ...`` imports only
``CMD``'s module, which imports torch and the plugins only when its command needs them
(``bench list`` reads the plugin index instead, ``benchmark.plugins.index``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import NoReturn

from benchmark.errors import BenchError

#: command -> (module under ``benchmark.cli``, one-line help shown by ``bench --help``)
COMMANDS: dict[str, tuple[str, str]] = {
    "list": ("listing", "list methods, datasets and metrics"),
    "run": ("run", "train and evaluate a method on a dataset"),
    "table": ("table", "aggregate stored runs"),
    "show": ("show", "show one run record"),
    "dataset": ("dataset", "describe one dataset (splits, classes, attributes, fingerprint)"),
    "sweep": ("sweep", "run methods × datasets × seeds × hyperparameters"),
    "leaderboard": ("leaderboard", "build or show leaderboard CSVs"),
    "compare": ("compare", "rank your runs against a leaderboard CSV"),
    "submit": ("submit", "check a method plugin, run the protocol, write a submission bundle"),
    "verify": ("verify", "verify a submission bundle and add its rows to the leaderboard"),
    "report": ("report", "write an HTML page of the leaderboards"),
    "plot": (
        "plot",
        "draw a plot (PNG) from the stored records (bench plot --help lists the kinds)",
    ),
    "cache": ("cache", "pre-decode the images of an on-disk dataset (fast data path)"),
    "perf": ("perf", "measure speed against reference implementations"),
    "reproduce": ("reproduce", "run a paper study and check its claims"),
    "card": ("card", "one page of every robustness lens of trained models on a dataset"),
}

EPILOG = """examples:
  bench list methods
  bench run --method tde ce --dataset glyph-lt
  bench run --method erm --dataset glyph-lt --seed 0 1 2
  bench table --results results
  bench show 3f2a9c1e
  bench dataset waterbirds-synth --preview waterbirds.png
  bench sweep --method erm --dataset glyph-lt --grid lr=0.01,0.1 --select val-acc --seed 0 1 2
  bench perf metrics
  bench cache imagenet-lt --data-root /data --measure 2000
  bench plot --dataset glyph-lt --method 'ce,deconfound,tde' --out per_class.png
  bench perf train --backbone resnet32 --batch-size 128
  bench reproduce tde-glyph-lt
  bench card --method erm,groupdro --dataset waterbirds-synth
"""


def command_module(name: str) -> ModuleType:
    """The module of subcommand ``name`` (imported now)."""
    return importlib.import_module(f"benchmark.cli.{COMMANDS[name][0]}")


def _chosen(argv: Sequence[str]) -> str | None:
    """The subcommand named on the command line (the first word that is not an option)."""
    for token in argv:
        if not token.startswith("-"):
            return token if token in COMMANDS else None
    return None


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (exit code 2), like every other
    error of bench; the full usage stays one ``--help`` away."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``bench`` parser. With ``argv``, only the chosen subcommand's module is imported
    and its parser built in full; the others are listed by their help line. Without, every
    subcommand is built in full (tests, documentation)."""
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
    chosen = None if argv is None else _chosen(argv)
    for name, (_, help_line) in COMMANDS.items():
        if argv is None or name == chosen:
            command_module(name).add_parser(sub, common)
        else:
            sub.add_parser(name, help=help_line, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        if not getattr(args, "loads_plugins_itself", False):
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
