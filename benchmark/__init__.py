"""bench: one benchmark harness for robustness research in computer vision.

Public API for plugin authors and for people who use the metrics on their own predictions::

    from benchmark import Method, register_method, HParam, metric_fn

The names are imported on first use (PEP 562), so that ``bench --help`` and ``bench list``
start without importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> the module that defines it
_EXPORTS = {
    "Backbone": "benchmark.backbones",
    "build_backbone": "benchmark.backbones",
    "register_backbone": "benchmark.backbones",
    "TRACKS": "benchmark.dataset",
    "Bundle": "benchmark.dataset",
    "Dataset": "benchmark.dataset",
    "DatasetInfo": "benchmark.dataset",
    "Split": "benchmark.dataset",
    "register_dataset": "benchmark.dataset",
    "BenchError": "benchmark.errors",
    "Choice": "benchmark.hparams",
    "HParam": "benchmark.hparams",
    "IntUniform": "benchmark.hparams",
    "LogUniform": "benchmark.hparams",
    "Uniform": "benchmark.hparams",
    "AT_LEAST_ONE": "benchmark.hparams",
    "FINITE": "benchmark.hparams",
    "NON_NEGATIVE": "benchmark.hparams",
    "POSITIVE": "benchmark.hparams",
    "SEED": "benchmark.hparams",
    "UNIT": "benchmark.hparams",
    "Each": "benchmark.hparams",
    "Range": "benchmark.hparams",
    "Valid": "benchmark.hparams",
    "Classifier": "benchmark.method",
    "Method": "benchmark.method",
    "register_method": "benchmark.method",
    "EvalView": "benchmark.metric",
    "Metric": "benchmark.metric",
    "metric_fn": "benchmark.metric",
    "register_metric": "benchmark.metric",
    "Outputs": "benchmark.outputs",
    "load_plugins": "benchmark.plugins",
    "Batch": "benchmark.contracts",
    "Trainer": "benchmark.training",
}

if TYPE_CHECKING:  # pragma: no cover - for type checkers and editors only
    from benchmark.backbones import Backbone, build_backbone, register_backbone
    from benchmark.contracts import Batch
    from benchmark.dataset import TRACKS, Bundle, Dataset, DatasetInfo, Split, register_dataset
    from benchmark.errors import BenchError
    from benchmark.hparams import (
        AT_LEAST_ONE,
        FINITE,
        NON_NEGATIVE,
        POSITIVE,
        SEED,
        UNIT,
        Choice,
        Each,
        HParam,
        IntUniform,
        LogUniform,
        Range,
        Uniform,
        Valid,
    )
    from benchmark.method import Classifier, Method, register_method
    from benchmark.metric import EvalView, Metric, metric_fn, register_metric
    from benchmark.outputs import Outputs
    from benchmark.plugins import load_plugins
    from benchmark.training import Trainer


def __getattr__(name: str) -> Any:
    """Import a public name's module on first access (``AttributeError`` for others)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'benchmark' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [
    "AT_LEAST_ONE",
    "FINITE",
    "NON_NEGATIVE",
    "POSITIVE",
    "SEED",
    "TRACKS",
    "UNIT",
    "Backbone",
    "Batch",
    "BenchError",
    "Bundle",
    "Choice",
    "Classifier",
    "Dataset",
    "DatasetInfo",
    "Each",
    "EvalView",
    "HParam",
    "IntUniform",
    "LogUniform",
    "Method",
    "Metric",
    "Outputs",
    "Range",
    "Split",
    "Trainer",
    "Uniform",
    "Valid",
    "__version__",
    "build_backbone",
    "load_plugins",
    "metric_fn",
    "register_backbone",
    "register_dataset",
    "register_method",
    "register_metric",
]
