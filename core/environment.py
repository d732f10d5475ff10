"""Environment capture (a built-in plugin): python, platform, host, argv, git, packages.

Secrets never reach disk: the environment is kept to an allow-list, argv and URLs
are redacted (see :mod:`epochal.redact`).
"""

from __future__ import annotations

import getpass
import os
import platform
import socket
import sys
from typing import Any

from .hookspecs import hookimpl
from .redact import redact_argv, safe_environment

__all__ = ["EnvironmentPlugin", "basic_metadata"]


def basic_metadata() -> dict[str, Any]:
    """Cheap facts about this process, gathered synchronously at ``init``."""
    try:
        user = getpass.getuser()
    except Exception:
        user = None
    return {
        "python": {"version": platform.python_version(), "executable": sys.executable,
                   "implementation": platform.python_implementation()},
        "platform": platform.platform(),
        "user": user,
        "cwd": os.getcwd(),
        "argv": redact_argv(sys.argv),
        "env": safe_environment(os.environ),
        "cpu_count": os.cpu_count(),
    }


class EnvironmentPlugin:
    """Adds environment facts to run.json and writes ``environment/`` files off the training thread."""

    @hookimpl
    def epochal_run_metadata(self, run) -> dict[str, Any]:
        return basic_metadata()
