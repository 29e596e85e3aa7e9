"""Track modules: the building blocks one track's method plugins share (losses, heads,
samplers, scores), one module per track (``longtail.py``; ``bias.py``, ``ood.py``,
``explain.py``, ``ssl.py`` as the tracks add them).

They are not part of the core's code hash (``benchmark.sources.core_hash``): a plugin's source
hash includes the track modules its file imports (``benchmark.sources.plugin_files``), so
adding or editing a track module re-keys only the records of the plugins that use it.
"""
