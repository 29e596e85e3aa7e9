"""Namespace for plugin files loaded with ``--plugin FILE``."""
