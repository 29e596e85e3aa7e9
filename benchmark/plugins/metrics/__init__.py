"""Built-in metrics plugins, imported from the top-level ``metrics/`` folder."""

from benchmark.plugins import builtin_dir

_folder = builtin_dir("metrics")
__path__ = [str(_folder)] if _folder else []
