"""Compatibility name of ``benchmark.tracks.longtail`` (the long-tail track module).

``import benchmark.longtail`` gives the very same module object, so classes keep one identity
and one ``__module__``; new code imports ``benchmark.tracks.longtail``.
"""

import sys

from benchmark.tracks import longtail as _longtail

sys.modules[__name__] = _longtail
