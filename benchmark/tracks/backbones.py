"""Backbones the bias, OoD and explanation tracks add to the shared registry.

A track module, not the core: it hashes with every plugin that imports it. ``erm`` (the
baseline of every track) and each track module import it, so a record of any run on one of
these backbones changes key when this file changes. Register with
``@register_backbone("name")`` on a factory ``(C, H, W) -> Backbone`` (see
``benchmark.backbones``: ``forward_map`` gives the last feature map, ``forward`` its global
average pool, ``feature_dim`` the width).
"""

from __future__ import annotations

from benchmark.backbones import Backbone, register_backbone  # noqa: F401
