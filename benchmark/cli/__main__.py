"""``python -m benchmark.cli`` is the ``bench`` command."""

import sys

from benchmark.cli import main

sys.exit(main())
