"""Built-in datasets plugins, imported from the top-level ``datasets/`` folder."""

from benchmark.plugins import builtin_dir

_folder = builtin_dir("datasets")
__path__ = [str(_folder)] if _folder else []
