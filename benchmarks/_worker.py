"""Subprocess entry: ``python -m benchmarks._worker module:func '{"kwarg": ...}'``.

Calls ``benchmarks.<module>.<func>(**kwargs)`` and prints its dict as one JSON line after a
marker, then leaves at once (some anchors take seconds to tear down at exit; that is not measured).
"""

from __future__ import annotations

import importlib
import json
import os
import sys

from ._harness import MARK


def main() -> None:
    target, kwargs = sys.argv[1], json.loads(sys.argv[2])
    module, func = target.split(":")
    result = getattr(importlib.import_module(f"benchmarks.{module}"), func)(**kwargs)
    sys.stdout.write(MARK + json.dumps(result) + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
