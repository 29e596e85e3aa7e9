"""Plot kinds of ``bench plot KIND``: one module per kind in this folder, each registering one
``PlotKind`` with ``@register_plot("kind")`` (``per-class`` here; ``reliability``,
``ood-scores``, ``saliency``, ``insdel-curves``, ``ssl-ratio`` as the tracks add them), so that
tracks add plots without editing a shared file. Modules are imported when the parser is built:
keep their top level light (numpy, matplotlib inside functions).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from typing import Any, ClassVar

from benchmark.registry import Registry


class PlotKind:
    """One kind of plot. ``add_arguments`` adds the kind's own options to the ``bench plot``
    parser (beside the shared ``--results``, ``--dataset``, ``--method``, ``--split``,
    ``--out``); ``main`` draws it from the stored records and returns the exit code; user
    mistakes raise ``BenchError`` (one line, exit code 2)."""

    name: ClassVar[str] = ""
    help: ClassVar[str] = ""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """The kind's own options (names must not collide with other kinds')."""

    def main(self, args: argparse.Namespace) -> int:
        raise NotImplementedError


PLOTS: Registry[type[PlotKind]] = Registry("plot kind", PlotKind)
register_plot = PLOTS.register
_discovered = False


def discover() -> Registry[type[PlotKind]]:
    """Import every module of this package once (each registers its kind), and the modules
    named by installed packages' ``bench.plots`` entry points; the registry. Plugin files
    (``--plugin``, ``$BENCH_PLUGIN_PATH``) may also call ``register_plot``: their kinds exist
    once the plugins are loaded, so ``bench plot`` checks the kind's name after loading them
    (such kinds use the shared options only)."""
    global _discovered
    if not _discovered:
        _discovered = True
        for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
            importlib.import_module(f"{__name__}.{info.name}")
        from importlib.metadata import entry_points

        for entry in entry_points(group="bench.plots"):
            importlib.import_module(entry.value.split(":", 1)[0])
    return PLOTS


def matching_records(args: argparse.Namespace, store: Any) -> tuple[list[Any], list[str]]:
    """The stored records matching ``--dataset`` (fnmatch) and ``--method`` (comma-separated
    fnmatch patterns), and those patterns in order (empty without ``--method``)."""
    import fnmatch

    records = list(store.records())
    if args.dataset:
        records = [r for r in records if fnmatch.fnmatch(r.dataset, args.dataset)]
    patterns = [p.strip() for p in args.method.split(",") if p.strip()] if args.method else []
    if patterns:
        records = [r for r in records if any(fnmatch.fnmatch(r.method, p) for p in patterns)]
    return records, patterns
