"""The runs open in this process: the current run, and what becomes of open runs at
interpreter exit (finished), on an uncaught exception (failed) and in a forked child
(dropped: the child's copies detach, see ``Run._detach_after_fork``)."""

from __future__ import annotations

import atexit
import os
import sys
import traceback
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .run import Run

__all__ = ["current_run", "active_runs", "inherited_run", "finish"]

_active: list[Run] = []
_inherited: list[Run] = []  # in a forked child: the parent's runs, detached (their calls are no-ops)
_hooks_installed = False


def current_run() -> Run | None:
    """The most recent unfinished run of this process, or None."""
    return _active[-1] if _active else None


def inherited_run() -> Run | None:
    """In a forked child: the parent's current run, detached, so ``epochal.log()`` there is a no-op
    that warns once (as the run's own ``log()`` is) instead of an error that would stop a worker."""
    return _inherited[-1] if _inherited else None


def active_runs() -> list[Run]:
    """The unfinished runs of this process, oldest first."""
    return list(_active)


def finish(status: str | None = None) -> None:
    """Finish the current run, if any."""
    run = current_run()
    if run is not None:
        run.finish(status)


def _register_active(run: Run) -> None:
    global _hooks_installed
    _active.append(run)
    if not _hooks_installed:
        _hooks_installed = True
        atexit.register(_finish_all_at_exit)
        previous = sys.excepthook

        def excepthook(exc_type, exc, tb):
            text = "".join(traceback.format_exception(exc_type, exc, tb))
            for active in list(_active):
                active.finish("failed", error=text)
            previous(exc_type, exc, tb)

        sys.excepthook = excepthook


def _unregister_active(run: Run) -> None:
    if run in _active:
        _active.remove(run)


def _finish_all_at_exit() -> None:
    for run in list(reversed(_active)):
        run.finish()


def _drop_runs_in_forked_child() -> None:
    """``os.register_at_fork`` hook: a forked child never inherits its parent's runs."""
    inherited = [run for run in _active if not run.disabled]
    for run in inherited:
        run._detach_after_fork()
    if inherited:
        _inherited[:] = inherited
    _active.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_runs_in_forked_child)
