"""``python -m epochal``: the same as the ``epochal`` command."""

import sys

from .cli import main

sys.exit(main())
