"""Built-in methods plugins, imported from the top-level ``methods/`` folder."""

from benchmark.plugins import builtin_dir

_folder = builtin_dir("methods")
__path__ = [str(_folder)] if _folder else []
