"""bench: one benchmark harness for robustness research in computer vision.

Public API for plugin authors and for people who use the metrics on their own predictions::

    from benchmark import Method, register_method, HParam, metric_fn
"""

__version__ = "0.1.0"

from benchmark.backbones import Backbone, build_backbone, register_backbone
from benchmark.contracts import Batch
from benchmark.dataset import (
    TRACKS,
    Bundle,
    Dataset,
    DatasetInfo,
    Split,
    register_dataset,
)
from benchmark.errors import BenchError
from benchmark.hparams import Choice, HParam, IntUniform, LogUniform, Uniform
from benchmark.method import Classifier, Method, register_method
from benchmark.metric import EvalView, Metric, metric_fn, register_metric
from benchmark.outputs import Outputs
from benchmark.plugins import load_plugins
from benchmark.training import Trainer

__all__ = [
    "TRACKS",
    "Backbone",
    "Batch",
    "BenchError",
    "Bundle",
    "Choice",
    "Classifier",
    "Dataset",
    "DatasetInfo",
    "EvalView",
    "HParam",
    "IntUniform",
    "LogUniform",
    "Method",
    "Metric",
    "Outputs",
    "Split",
    "Trainer",
    "Uniform",
    "__version__",
    "build_backbone",
    "load_plugins",
    "metric_fn",
    "register_backbone",
    "register_dataset",
    "register_method",
    "register_metric",
]
